-- The wake-up that tells waiting callers a run ended carries its output when the run completed
-- with a small one (at most 1,000 bytes): "done <id> <output>", else "done <id>" as before. A
-- caller's `result()` then needs no read. The message is sent at the commit that stores the
-- output, after that commit is durable, and a COMPLETED run never changes again. (finish_runs
-- calls this function; its own text stays under the driver's 4,096-character cache limit.)
CREATE OR REPLACE FUNCTION tether_done(p_channel text, p_id text, p_status text, p_output text)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify(p_channel, CASE
        WHEN p_status = 'COMPLETED' AND octet_length(p_output) <= 1000
        THEN 'done ' || p_id || ' ' || p_output
        ELSE 'done ' || p_id END)
$$;
