-- Reconciliation: each gateway with a query API is asked, every `reconcile_every`, for the
-- receipts of its recent sends that never came. The job (kind `reconcile`) needs no schema;
-- these indexes keep its listing cheap: the sends of one gateway in a time range, and whether
-- a call-out has had a receipt already.
CREATE INDEX attempts_sent_at ON attempts (gateway, started_at) WHERE result = 'sent';
CREATE INDEX inbound_callout ON inbound (callout_id) WHERE callout_id IS NOT NULL;
