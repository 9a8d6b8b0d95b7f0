-- The highest `seq` ever pruned. A stream reader whose cursor is below it
-- may have missed entries that were deleted (expired ones), so it is told
-- to reload from the paged feed rather than resume. One row, updated only
-- when a prune deletes something.
CREATE TABLE revocation_horizon (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    pruned_seq bigint NOT NULL
);
INSERT INTO revocation_horizon (pruned_seq) VALUES (0);
