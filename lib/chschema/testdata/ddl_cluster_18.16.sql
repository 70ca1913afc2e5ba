-- 1/1 events table
CREATE TABLE IF NOT EXISTS `alumini`.events_local ON CLUSTER `analytics`
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/alumini/events_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), event_id);

-- 1/2 events table
CREATE TABLE IF NOT EXISTS `alumini`.events ON CLUSTER `analytics` AS `alumini`.events_local
ENGINE = Distributed('analytics', 'alumini', 'events_local', cityHash64(event_id));

-- 2/1 report views
CREATE TABLE IF NOT EXISTS `alumini`.events_hourly_local ON CLUSTER `analytics`
(
    client_id String,
    hour DateTime('UTC'),
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    is_bot UInt8,
    events AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/events_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, hour, type, is_bot);

-- 2/2 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.events_hourly_local_mv ON CLUSTER `analytics` TO `alumini`.events_hourly_local AS
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_id) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM `alumini`.events_local
GROUP BY client_id, hour, type, is_bot;

-- 2/3 report views
CREATE TABLE IF NOT EXISTS `alumini`.events_hourly ON CLUSTER `analytics` AS `alumini`.events_hourly_local
ENGINE = Distributed('analytics', 'alumini', 'events_hourly_local', rand());

-- 2/4 report views
CREATE TABLE IF NOT EXISTS `alumini`.sessions_daily_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, String, UInt8),
    events AggregateFunction(uniqExact, String),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/sessions_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, session_id);

-- 2/5 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.sessions_daily_local_mv ON CLUSTER `analytics` TO `alumini`.sessions_daily_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_id, type = 'pageview') AS pageviews,
    uniqExactState(event_id) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM `alumini`.events_local
GROUP BY client_id, day, is_bot, session_id;

-- 2/6 report views
CREATE TABLE IF NOT EXISTS `alumini`.sessions_daily ON CLUSTER `analytics` AS `alumini`.sessions_daily_local
ENGINE = Distributed('analytics', 'alumini', 'sessions_daily_local', rand());

-- 2/7 report views
CREATE TABLE IF NOT EXISTS `alumini`.pages_daily_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    hostname String,
    path String,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/pages_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, hostname, path);

-- 2/8 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.pages_daily_local_mv ON CLUSTER `analytics` TO `alumini`.pages_daily_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM `alumini`.events_local
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 2/9 report views
CREATE TABLE IF NOT EXISTS `alumini`.pages_daily ON CLUSTER `analytics` AS `alumini`.pages_daily_local
ENGINE = Distributed('analytics', 'alumini', 'pages_daily_local', rand());

-- 2/10 report views
CREATE TABLE IF NOT EXISTS `alumini`.sources_daily_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/sources_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign);

-- 2/11 report views
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.sources_daily_local_mv ON CLUSTER `analytics` TO `alumini`.sources_daily_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM `alumini`.events_local
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 2/12 report views
CREATE TABLE IF NOT EXISTS `alumini`.sources_daily ON CLUSTER `analytics` AS `alumini`.sources_daily_local
ENGINE = Distributed('analytics', 'alumini', 'sources_daily_local', rand());

-- 3/1 event_key column
ALTER TABLE `alumini`.events_local ON CLUSTER `analytics` ADD COLUMN event_key UInt64 MATERIALIZED cityHash64(event_id);

-- 3/2 event_key column
DROP TABLE IF EXISTS `alumini`.events ON CLUSTER `analytics`;

-- 3/3 event_key column
CREATE TABLE IF NOT EXISTS `alumini`.events ON CLUSTER `analytics`
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String,
    event_key UInt64 ALIAS cityHash64(event_id)
)
ENGINE = Distributed('analytics', 'alumini', 'events_local', cityHash64(event_id));

-- 4/1 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.events_hourly_v2_local ON CLUSTER `analytics`
(
    client_id String,
    hour DateTime('UTC'),
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    is_bot UInt8,
    events AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/events_hourly_v2_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, hour, type, is_bot);

-- 4/2 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.events_hourly_v2_local_mv ON CLUSTER `analytics` TO `alumini`.events_hourly_v2_local AS
SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_key) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM `alumini`.events_local
GROUP BY client_id, hour, type, is_bot;

-- 4/3 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.events_hourly_v2 ON CLUSTER `analytics` AS `alumini`.events_hourly_v2_local
ENGINE = Distributed('analytics', 'alumini', 'events_hourly_v2_local', rand());

-- 4/4 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.sessions_daily_v2_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, UInt64, UInt8),
    events AggregateFunction(uniqExact, UInt64),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/sessions_daily_v2_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, session_id);

-- 4/5 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.sessions_daily_v2_local_mv ON CLUSTER `analytics` TO `alumini`.sessions_daily_v2_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_key, type = 'pageview') AS pageviews,
    uniqExactState(event_key) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM `alumini`.events_local
GROUP BY client_id, day, is_bot, session_id;

-- 4/6 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.sessions_daily_v2 ON CLUSTER `analytics` AS `alumini`.sessions_daily_v2_local
ENGINE = Distributed('analytics', 'alumini', 'sessions_daily_v2_local', rand());

-- 4/7 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.pages_daily_v2_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    hostname String,
    path String,
    pageviews AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/pages_daily_v2_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, hostname, path);

-- 4/8 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.pages_daily_v2_local_mv ON CLUSTER `analytics` TO `alumini`.pages_daily_v2_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM `alumini`.events_local
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path;

-- 4/9 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.pages_daily_v2 ON CLUSTER `analytics` AS `alumini`.pages_daily_v2_local
ENGINE = Distributed('analytics', 'alumini', 'pages_daily_v2_local', rand());

-- 4/10 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.sources_daily_v2_local ON CLUSTER `analytics`
(
    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    pageviews AggregateFunction(uniqExact, UInt64),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/sources_daily_v2_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign);

-- 4/11 report views over event_key
CREATE MATERIALIZED VIEW IF NOT EXISTS `alumini`.sources_daily_v2_local_mv ON CLUSTER `analytics` TO `alumini`.sources_daily_v2_local AS
SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_key) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM `alumini`.events_local
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign;

-- 4/12 report views over event_key
CREATE TABLE IF NOT EXISTS `alumini`.sources_daily_v2 ON CLUSTER `analytics` AS `alumini`.sources_daily_v2_local
ENGINE = Distributed('analytics', 'alumini', 'sources_daily_v2_local', rand());

-- 4/13 report views over event_key
DROP TABLE IF EXISTS `alumini`.events_hourly_local_mv ON CLUSTER `analytics`;

-- 4/14 report views over event_key
DROP TABLE IF EXISTS `alumini`.events_hourly ON CLUSTER `analytics`;

-- 4/15 report views over event_key
DROP TABLE IF EXISTS `alumini`.events_hourly_local ON CLUSTER `analytics`;

-- 4/16 report views over event_key
DROP TABLE IF EXISTS `alumini`.sessions_daily_local_mv ON CLUSTER `analytics`;

-- 4/17 report views over event_key
DROP TABLE IF EXISTS `alumini`.sessions_daily ON CLUSTER `analytics`;

-- 4/18 report views over event_key
DROP TABLE IF EXISTS `alumini`.sessions_daily_local ON CLUSTER `analytics`;

-- 4/19 report views over event_key
DROP TABLE IF EXISTS `alumini`.pages_daily_local_mv ON CLUSTER `analytics`;

-- 4/20 report views over event_key
DROP TABLE IF EXISTS `alumini`.pages_daily ON CLUSTER `analytics`;

-- 4/21 report views over event_key
DROP TABLE IF EXISTS `alumini`.pages_daily_local ON CLUSTER `analytics`;

-- 4/22 report views over event_key
DROP TABLE IF EXISTS `alumini`.sources_daily_local_mv ON CLUSTER `analytics`;

-- 4/23 report views over event_key
DROP TABLE IF EXISTS `alumini`.sources_daily ON CLUSTER `analytics`;

-- 4/24 report views over event_key
DROP TABLE IF EXISTS `alumini`.sources_daily_local ON CLUSTER `analytics`;

-- 5/1 sampling key
CREATE TABLE IF NOT EXISTS `alumini`.events_sampled_local ON CLUSTER `analytics`
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String,
    event_key UInt64 MATERIALIZED cityHash64(event_id),
    sample_key UInt32 MATERIALIZED intHash32(visitor_id)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/alumini/events_sampled_local', '{replica}')
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), sample_key, event_id)
SAMPLE BY sample_key;

-- 5/2 sampling key
RENAME TABLE `alumini`.events_sampled_local TO `alumini`.events_swapping_local, `alumini`.events_local TO `alumini`.events_unsampled_local, `alumini`.events_swapping_local TO `alumini`.events_local ON CLUSTER `analytics`;

-- 5/3 sampling key
CREATE TABLE IF NOT EXISTS `alumini`.events_unsampled ON CLUSTER `analytics` AS `alumini`.events_unsampled_local
ENGINE = Distributed('analytics', 'alumini', 'events_unsampled_local', cityHash64(event_id));

-- 5/4 sampling key
INSERT INTO `alumini`.events (client_id, event_id, type, name, timestamp, received_at, url, hostname, path, title, referrer, browser, browser_version, os, os_version, device_type, is_bot, referrer_source, referrer_medium, search_term, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, city, language, screen_width, screen_height, timezone, visitor_id, session_id, is_new_visitor, previous_visit, prop_keys, prop_values, user_id, ip_truncated)
SELECT client_id, event_id, type, name, timestamp, received_at, url, hostname, path, title, referrer, browser, browser_version, os, os_version, device_type, is_bot, referrer_source, referrer_medium, search_term, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, city, language, screen_width, screen_height, timezone, visitor_id, session_id, is_new_visitor, previous_visit, prop_keys, prop_values, user_id, ip_truncated FROM `alumini`.events_unsampled;

-- 5/5 sampling key
DROP TABLE IF EXISTS `alumini`.events_unsampled ON CLUSTER `analytics`;

-- 5/6 sampling key
DROP TABLE IF EXISTS `alumini`.events_unsampled_local ON CLUSTER `analytics`;

-- 5/7 sampling key
DROP TABLE IF EXISTS `alumini`.events_hourly_v2_local_mv ON CLUSTER `analytics`;

-- 5/8 sampling key
DROP TABLE IF EXISTS `alumini`.sessions_daily_v2_local_mv ON CLUSTER `analytics`;

-- 5/9 sampling key
DROP TABLE IF EXISTS `alumini`.pages_daily_v2_local_mv ON CLUSTER `analytics`;

-- 5/10 sampling key
DROP TABLE IF EXISTS `alumini`.sources_daily_v2_local_mv ON CLUSTER `analytics`;

-- 6/1 erased_visitors table
CREATE TABLE IF NOT EXISTS `alumini`.erased_visitors ON CLUSTER `analytics` (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/alumini/erased_visitors', '{shard}-{replica}') ORDER BY (client_id, visitor_id);

-- 7/1 drop report views
DROP TABLE IF EXISTS `alumini`.events_hourly_v2_local_mv ON CLUSTER `analytics`;

-- 7/2 drop report views
DROP TABLE IF EXISTS `alumini`.events_hourly_v2 ON CLUSTER `analytics`;

-- 7/3 drop report views
DROP TABLE IF EXISTS `alumini`.events_hourly_v2_local ON CLUSTER `analytics`;

-- 7/4 drop report views
DROP TABLE IF EXISTS `alumini`.sessions_daily_v2_local_mv ON CLUSTER `analytics`;

-- 7/5 drop report views
DROP TABLE IF EXISTS `alumini`.sessions_daily_v2 ON CLUSTER `analytics`;

-- 7/6 drop report views
DROP TABLE IF EXISTS `alumini`.sessions_daily_v2_local ON CLUSTER `analytics`;

-- 7/7 drop report views
DROP TABLE IF EXISTS `alumini`.pages_daily_v2_local_mv ON CLUSTER `analytics`;

-- 7/8 drop report views
DROP TABLE IF EXISTS `alumini`.pages_daily_v2 ON CLUSTER `analytics`;

-- 7/9 drop report views
DROP TABLE IF EXISTS `alumini`.pages_daily_v2_local ON CLUSTER `analytics`;

-- 7/10 drop report views
DROP TABLE IF EXISTS `alumini`.sources_daily_v2_local_mv ON CLUSTER `analytics`;

-- 7/11 drop report views
DROP TABLE IF EXISTS `alumini`.sources_daily_v2 ON CLUSTER `analytics`;

-- 7/12 drop report views
DROP TABLE IF EXISTS `alumini`.sources_daily_v2_local ON CLUSTER `analytics`;

