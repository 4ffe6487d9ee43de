-- The audit head takes the hash of each entry appended, and a room's
-- last_seq follows an event stored past it, in the statement that inserts
-- the row: one statement fewer per audited change and per replicated event.
CREATE TRIGGER audit_log_moves_head AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1 AND seq = NEW.seq;
END;

CREATE TRIGGER events_move_room AFTER INSERT ON events
WHEN NEW.seq > (SELECT last_seq FROM rooms WHERE id = NEW.room_id)
BEGIN
    UPDATE rooms SET last_seq = NEW.seq, last_event_at = NEW.at WHERE id = NEW.room_id;
END;
