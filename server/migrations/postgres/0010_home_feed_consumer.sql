-- The home-feed fan-out reads the outbox (consumer 'home_feeds') instead of an in-process
-- queue. It begins at the end of the outbox as it is now: the events before were fanned
-- out by the build that wrote them, and replaying days of them would only churn the feeds.
INSERT INTO outbox_positions (consumer, tx, id)
SELECT 'home_feeds', coalesce(newest.tx, '0'::xid8), coalesce(newest.id, 0)
FROM (SELECT 1) AS one
LEFT JOIN (SELECT tx, id FROM outbox ORDER BY tx DESC, id DESC LIMIT 1) AS newest ON true
ON CONFLICT (consumer) DO NOTHING;
