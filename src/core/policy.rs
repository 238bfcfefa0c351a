//! Auto-approval policy (see issue "Auto-approval for on-call requesters").
