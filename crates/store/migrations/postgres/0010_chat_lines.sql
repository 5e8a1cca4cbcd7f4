-- The lines said in the robot's channels (people's and the robot's own), for postmortems' timelines. Bounded:
-- each insert drops lines older than the retention and beyond the most kept (`ChatStore::add_chat_line`).
-- `room_key` is the room in ASCII lower case (IRC channel names are case-insensitive). Times are Unix ms.
CREATE TABLE chat_lines (
    id       BIGSERIAL PRIMARY KEY,
    room     TEXT    NOT NULL,
    room_key TEXT    NOT NULL,
    at_ms    BIGINT  NOT NULL,
    who      TEXT    NOT NULL,
    text     TEXT    NOT NULL
);
CREATE INDEX chat_lines_room_at ON chat_lines (room_key, at_ms);
CREATE INDEX chat_lines_at ON chat_lines (at_ms);
