"""OpenAI's Files and Batches API over the durable jobs layer."""
