-- Each exchange with SRI names the claim it was made under, so that a worker
-- can try its record again.
--
-- A worker records an exchange, and what it decided, in one transaction
-- (the server's SubmissionsStore.record). When that transaction failed (the
-- database out of reach for a moment, a failover), SRI's answer was lost
-- until the claim's lease ended (SRI_LEASE_MS, a minute by default) and a
-- worker sent the document again. The worker now tries the record again,
-- with backoff, while its lease lasts. But a transaction whose COMMIT was
-- sent and whose answer never came may have committed, and trying it again
-- must neither record the exchange twice nor count it twice among the
-- document's attempts. So the record now writes its claim's lease id into
-- sri_exchanges.lease and does nothing when the document already has an
-- exchange under that id: a claim makes one exchange (a claim's id is drawn
-- afresh for every claim, and a document is claimed at most once under it).
--
-- A column without a default is added without rewriting the table.
-- Exchanges recorded before this migration have no lease.

ALTER TABLE sri_exchanges ADD COLUMN lease uuid;

COMMENT ON COLUMN sri_exchanges.lease IS 'The claim the exchange was made under (document_submissions.leased_by at the time): one exchange per claim of a document, so that a worker trying its record again after a failed commit never records it twice. NULL for exchanges recorded before migration 0030.';
