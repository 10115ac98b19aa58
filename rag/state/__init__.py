"""What the service remembers about its callers: API keys, answers and feedback, rate limits."""
