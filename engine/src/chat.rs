//! Chat templates (stub).
