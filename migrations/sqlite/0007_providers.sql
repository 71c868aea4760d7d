-- Providers: callbacks idempotent by the provider's id, receipts found by the provider's id
-- for a send, and per-recipient caps counted from the attempts themselves (durable, shared by
-- every instance).
ALTER TABLE inbound ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX inbound_event ON inbound (gateway, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX attempts_gateway_ref ON attempts (gateway, gateway_ref) WHERE gateway_ref IS NOT NULL;
CREATE INDEX attempts_recipient ON attempts (gateway, address, started_at);
