"""Hand-off to a person: the ticket a hand-off sends, its channels, and the outbox."""
