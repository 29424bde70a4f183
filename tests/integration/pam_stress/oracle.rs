//! The oracle, written from the contract: what every operation must return and log.

use super::*;

/// What one operation should do: the return code and the `decision=` of
/// the module's record (None: the module logs nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub op: Op,
    pub ret: Ret,
    pub decision: Option<&'static str>,
}

pub fn expect_op(world: &World, case: &Case, m: &ArgsModel, op: Op) -> Step {
    let step = |ret, decision| Step { op, ret, decision };
    if m.bad.is_some() {
        // Fail closed, except setcred, which must never fail.
        let ret = match op {
            Op::Setcred => Ret::Ignore,
            _ => Ret::ServiceErr,
        };
        return step(ret, Some("error"));
    }
    let exempt = || world.exempt(m, case.effective_user());
    match op {
        Op::Authenticate => {
            if exempt() {
                step(Ret::Ignore, Some("exempt"))
            } else if m.audit_only {
                step(Ret::Ignore, Some("would-block"))
            } else {
                step(Ret::AuthErr, Some("block"))
            }
        }
        Op::OpenSession => {
            let key = case
                .info
                .as_deref()
                .is_some_and(|i| has_publickey(world, i));
            let missing_ok = case.info.is_none() && m.missing_ok;
            if key || !m.require_publickey || missing_ok {
                step(Ret::Success, Some("session"))
            } else if exempt() {
                step(Ret::Success, Some("exempt"))
            } else if m.audit_only {
                step(Ret::Success, Some("would-refuse"))
            } else {
                step(Ret::PermDenied, Some("refuse"))
            }
        }
        Op::CloseSession => step(Ret::Success, None),
        Op::Setcred | Op::AcctMgmt | Op::Chauthtok => step(Ret::Ignore, None),
    }
}

/// The steps pamtester gets through: up to and including the first
/// operation whose code the stack does not let through.
pub fn expect(world: &World, case: &Case) -> Vec<Step> {
    let m = ArgsModel::of(&case.pieces);
    let mut steps = Vec::new();
    for (op, _) in &case.ops {
        let s = expect_op(world, case, &m, *op);
        steps.push(s);
        if s.ret != op.ok() {
            break;
        }
    }
    steps
}

/// Syslog priorities that go with a decision (err=3, warning=4,
/// notice=5, info=6); auth decisions are warnings when they carry a note
/// (a group that does not exist, a lookup error).
pub fn priorities(op: Op, decision: &str) -> &'static [u32] {
    match (op, decision) {
        (_, "error") => &[3],
        (Op::OpenSession, "session") => &[6],
        (Op::OpenSession, "refuse") => &[4],
        (Op::OpenSession, _) => &[5],
        _ => &[4, 5],
    }
}
