-- A user's profile picture: the object that holds it, and what the API says about it.
-- All NULL when there is none. The object is written before this row points at it and
-- the old object deleted after, so the row never names an object that is not there.
ALTER TABLE users ADD COLUMN picture_key TEXT;
ALTER TABLE users ADD COLUMN picture_type TEXT;
ALTER TABLE users ADD COLUMN picture_etag TEXT;
ALTER TABLE users ADD COLUMN picture_width INTEGER;
ALTER TABLE users ADD COLUMN picture_height INTEGER;
ALTER TABLE users ADD COLUMN picture_size INTEGER;
