"""ingest: platform webhooks (Messenger, Instagram, WhatsApp, Telegram, signed JSON) -> elmo.inbound; clicks -> elmo.feedback."""
