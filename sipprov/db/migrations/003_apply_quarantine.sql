-- Agents and queues the applier keeps out of Asterisk because a value of theirs does
-- not render (render.UnsafeValueError: e.g. a line break written straight into the
-- database). Maintained by the applier alone: after each render the table holds exactly
-- the rows that render left out, so a row whose data renders again is released by the
-- next apply, and a deleted agent or queue leaves with it. `since` is when the row was
-- first left out; `reason` names the entity and the rule, never the value.
CREATE TABLE apply_quarantine (
    kind   text        NOT NULL CHECK (kind IN ('agent', 'queue')),
    id     bigint      NOT NULL,
    reason text        NOT NULL,
    since  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);
