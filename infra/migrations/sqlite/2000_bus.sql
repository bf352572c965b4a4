-- The local event bus: an append-only log per topic-partition and the
-- committed position of each consumer group.

-- Partition count of each topic, fixed when the topic is first used.
CREATE TABLE bus_topics (
    topic         TEXT    NOT NULL PRIMARY KEY,
    partitions    INTEGER NOT NULL CHECK (partitions > 0),
    created_at_ms INTEGER NOT NULL
);

-- Next offset to assign in each topic-partition (row-locked while publishing).
CREATE TABLE bus_heads (
    topic        TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_no)
);

CREATE TABLE bus_log (
    topic         TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    log_offset    INTEGER NOT NULL,
    message_id    TEXT    NOT NULL,
    msg_key       TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_no, log_offset)
);

-- Committed position of a consumer group: the next offset it will read.
CREATE TABLE bus_offsets (
    group_name    TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    next_offset   INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, topic, partition_no)
);
