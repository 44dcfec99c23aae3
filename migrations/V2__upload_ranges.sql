-- Landed byte ranges of resumable uploads: one row per span, half-open
-- [span_start, span_end). Merges keep the rows of an upload compacted into
-- its islands (see PgRangeTracker.ts); no uniqueness is needed or wanted,
-- since a merge deletes and re-inserts an upload's rows in one statement.
CREATE TABLE upload_ranges (
  upload_id   text   COLLATE "C" NOT NULL,
  span_start  bigint NOT NULL CHECK (span_start >= 0),
  span_end    bigint NOT NULL,
  CHECK (span_end > span_start)
);
CREATE INDEX upload_ranges_upload ON upload_ranges (upload_id, span_start);
