-- Mail status for admins (GET /api/v1/admin/outbox, issue 9): newest first, keyset on (created_at, id).
CREATE INDEX outbox_created_idx ON outbox (created_at DESC, id DESC);
