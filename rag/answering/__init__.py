"""Answering: history, context packing, prompts, grounding and citations around one engine call."""
