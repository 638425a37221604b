//! Faults a test can inject into one request's sequence: the scheduler must
//! fail that request with a clear error and keep the other slots
//! generating. The kinds are always defined; the hooks that inject them
//! (`Request::fault`, `INFER_FAULT`) exist only with the cargo feature
//! `fault-injection`, off in every normal build.
//!
//! A request carries its fault in [`crate::scheduler::Request::fault`], or
//! the engine assigns one from the `INFER_FAULT` environment variable read
//! at [`crate::scheduler::Engine::start`], so a whole `infer serve` built
//! with the feature can be driven from outside: `INFER_FAULT=KIND:AFTER@ID`
//! gives the request with id `ID` (1 = the first submitted) the fault
//! `KIND` once it has generated `AFTER` tokens; several are separated by
//! commas. Kinds: `nan_logits`, `kv_full`, `step_fails`.

use crate::error::{EngineError, Result};

/// What goes wrong, and after how many generated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The sequence's logits row turns NaN (a numerical blow-up).
    NanLogits { after: usize },
    /// The sequence's KV cache refuses to take another position.
    KvFull { after: usize },
    /// Any batched step holding this sequence fails (a failed GPU dispatch).
    StepFails { after: usize },
}

impl Fault {
    /// Tokens generated before the fault strikes.
    pub fn after(self) -> usize {
        match self {
            Fault::NanLogits { after } | Fault::KvFull { after } | Fault::StepFails { after } => after,
        }
    }
}

/// Parses `INFER_FAULT`'s value: `KIND:AFTER@ID[,…]`, as (request id, fault).
pub fn parse_plan(spec: &str) -> Result<Vec<(u64, Fault)>> {
    let bad = |item: &str, why: &str| EngineError::InvalidParam(format!("INFER_FAULT item {item:?}: {why} (expected KIND:AFTER@ID, KIND one of nan_logits, kv_full, step_fails)"));
    let mut plan = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (what, id) = item.split_once('@').ok_or_else(|| bad(item, "no @ID"))?;
        let id: u64 = id.parse().map_err(|_| bad(item, "the request id is not a number"))?;
        let (kind, after) = what.split_once(':').unwrap_or((what, "0"));
        let after: usize = after.parse().map_err(|_| bad(item, "AFTER is not a number"))?;
        let fault = match kind {
            "nan_logits" => Fault::NanLogits { after },
            "kv_full" => Fault::KvFull { after },
            "step_fails" => Fault::StepFails { after },
            _ => return Err(bad(item, "unknown kind")),
        };
        plan.push((id, fault));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_bad_items_name_themselves() {
        let plan = parse_plan("nan_logits:3@2, kv_full@5,step_fails:1@7").unwrap();
        assert_eq!(plan, vec![(2, Fault::NanLogits { after: 3 }), (5, Fault::KvFull { after: 0 }), (7, Fault::StepFails { after: 1 })]);
        let e = parse_plan("nan:3@2").unwrap_err().to_string();
        assert!(e.contains("\"nan:3@2\"") && e.contains("unknown kind"), "{e}");
        assert!(parse_plan("nan_logits:x@2").is_err());
        assert!(parse_plan("nan_logits:1").is_err());
    }
}
