"""Receiving deliveries: the webhook endpoint, each forge's headers and signatures, and
what an event means for swapyard."""
