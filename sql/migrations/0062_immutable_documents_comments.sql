-- The comments of the two triggers that keep documents immutable said they
-- hold "for every role, superusers included". They fire for every role, but
-- the table's owner can switch a trigger off (ALTER TABLE ... DISABLE
-- TRIGGER), and a superuser too (also session_replication_role = replica),
-- as for any trigger; the app role can do neither. Said so.

COMMENT ON TRIGGER documents_immutable_rows ON documents IS 'Refuses every UPDATE and DELETE of a document (documents_are_immutable): an issued document never changes. It fires for every role; only the table''s owner (ALTER TABLE ... DISABLE TRIGGER) or a superuser (also session_replication_role = replica) can switch it off, and the app role, which can do neither, has no UPDATE or DELETE on documents anyway.';
COMMENT ON TRIGGER documents_immutable_table ON documents IS 'Refuses TRUNCATE of documents (documents_are_immutable). It fires for every role; only the table''s owner or a superuser can switch it off.';
