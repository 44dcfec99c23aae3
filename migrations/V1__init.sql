-- Graviton on PostgreSQL, version 1: objects (content in chunked bytea rows)
-- and the key-value table. Text columns use COLLATE "C" so that ORDER BY and
-- range scans follow the UTF-8 byte order every Graviton listing promises.

-- One row per stored content. Contents are immutable once committed and are
-- shared by every object that points at them (copy is a new pointer, not new
-- bytes); `refs` counts those objects and is kept by the trigger below.
CREATE TABLE object_contents (
  id          bigint      PRIMARY KEY,
  size        bigint      NOT NULL CHECK (size >= 0),
  chunk_size  integer     NOT NULL CHECK (chunk_size > 0),
  refs        integer     NOT NULL DEFAULT 0 CHECK (refs >= 0),
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE SEQUENCE object_content_ids AS bigint;

-- The bytes: chunk `seq` holds bytes [seq * chunk_size, (seq + 1) * chunk_size).
-- No foreign key to object_contents: chunks are written before their content
-- row (whose size is known only at the end of the stream), in the same
-- transaction, and removed with it by the trigger.
CREATE TABLE object_chunks (
  content_id  bigint  NOT NULL,
  seq         integer NOT NULL CHECK (seq >= 0),
  data        bytea   NOT NULL,
  PRIMARY KEY (content_id, seq)
);
-- Out-of-line and uncompressed: `substring` on a ranged read then fetches
-- only the TOAST slices it needs, and writes skip a compression attempt on
-- content that is usually compressed already.
ALTER TABLE object_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE objects (
  scheme         text        COLLATE "C" NOT NULL,
  bucket         text        COLLATE "C" NOT NULL,
  path           text        COLLATE "C" NOT NULL,
  content_id     bigint      NOT NULL REFERENCES object_contents (id),
  content_type   text,
  metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
  last_modified  timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (scheme, bucket, path)
);
CREATE INDEX objects_content_id ON objects (content_id);

-- Reference counting: every change of an object's content moves one
-- reference; a content whose last reference goes away is deleted with its
-- chunks in the same transaction. Row locks on object_contents serialize
-- concurrent changes, and the foreign key makes a copy racing with the
-- deletion of its source fail instead of pointing at deleted content.
CREATE FUNCTION graviton_object_refs() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  remaining integer;
BEGIN
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.content_id IS DISTINCT FROM OLD.content_id) THEN
    UPDATE object_contents SET refs = refs + 1 WHERE id = NEW.content_id;
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.content_id IS DISTINCT FROM OLD.content_id) THEN
    UPDATE object_contents SET refs = refs - 1 WHERE id = OLD.content_id RETURNING refs INTO remaining;
    IF remaining = 0 THEN
      DELETE FROM object_chunks WHERE content_id = OLD.content_id;
      DELETE FROM object_contents WHERE id = OLD.content_id;
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER objects_refs
  AFTER INSERT OR DELETE OR UPDATE OF content_id ON objects
  FOR EACH ROW EXECUTE FUNCTION graviton_object_refs();

-- Byte values under UTF-8 keys (see src/core/KvKey.ts for the key rules).
CREATE TABLE kv (
  key    text  COLLATE "C" PRIMARY KEY,
  value  bytea NOT NULL
);
