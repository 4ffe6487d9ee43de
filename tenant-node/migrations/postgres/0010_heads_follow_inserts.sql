-- The audit head takes the hash of each entry appended, and a room's
-- last_seq follows an event stored past it, in the statement that inserts
-- the row: one statement fewer per audited change and per replicated event.
CREATE FUNCTION audit_log_moves_head() RETURNS trigger AS $$
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1 AND seq = NEW.seq;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_moves_head AFTER INSERT ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_moves_head();

CREATE FUNCTION events_move_room() RETURNS trigger AS $$
BEGIN
    UPDATE rooms SET last_seq = NEW.seq, last_event_at = NEW.at
    WHERE id = NEW.room_id AND last_seq < NEW.seq;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_move_room AFTER INSERT ON events
FOR EACH ROW EXECUTE FUNCTION events_move_room();
