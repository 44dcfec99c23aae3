-- Which locators hold a copy of each blob: one row per (blob, locator).
-- The second index answers "which blobs live at this locator prefix".
CREATE TABLE replicas (
  blob_key  text COLLATE "C" NOT NULL,
  locator   text COLLATE "C" NOT NULL,
  PRIMARY KEY (blob_key, locator)
);
CREATE INDEX replicas_locator ON replicas (locator);
