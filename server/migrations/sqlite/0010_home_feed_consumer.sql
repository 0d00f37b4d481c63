-- The home-feed fan-out reads the outbox (consumer 'home_feeds') instead of an in-process
-- queue. It begins at the end of the outbox as it is now: the events before were fanned
-- out by the build that wrote them, and replaying days of them would only churn the feeds.
INSERT INTO outbox_positions (consumer, position)
SELECT 'home_feeds', coalesce(max(id), 0) FROM outbox WHERE true
ON CONFLICT (consumer) DO NOTHING;
