-- Replicas: how many copies of a web app run side by side (1 until now). Kept on the app as
-- wanted, and on each deployment as it ran, like the other limits; quotas count an app's memory
-- and CPU once per replica.
ALTER TABLE apps ADD COLUMN replicas INTEGER NOT NULL DEFAULT 1 CHECK (replicas >= 1);
ALTER TABLE deployments ADD COLUMN replicas INTEGER NOT NULL DEFAULT 1 CHECK (replicas >= 1);
