"""Signed status callbacks for erasure requests and model-level webhooks (outbox + sender)."""
