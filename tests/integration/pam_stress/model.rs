//! PAM return codes, the operations pamtester runs, and the module arguments (generated pieces and what the module should make of them).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ret {
    Success,
    Ignore,
    AuthErr,
    PermDenied,
    ServiceErr,
}

impl Ret {
    pub fn name(self) -> &'static str {
        match self {
            Ret::Success => "PAM_SUCCESS",
            Ret::Ignore => "PAM_IGNORE",
            Ret::AuthErr => "PAM_AUTH_ERR",
            Ret::PermDenied => "PAM_PERM_DENIED",
            Ret::ServiceErr => "PAM_SERVICE_ERR",
        }
    }

    /// What pamtester prints when the module returned this and it is not
    /// what the operation lets through (see the file comment: an
    /// unexpected SUCCESS or IGNORE reaches pam_debug's system_err).
    pub fn message(self) -> &'static str {
        match self {
            Ret::AuthErr => "Authentication failure",
            Ret::PermDenied => "Permission denied",
            Ret::ServiceErr => "Error in service module",
            Ret::Success | Ret::Ignore => "System error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Authenticate,
    Setcred,
    AcctMgmt,
    OpenSession,
    CloseSession,
    Chauthtok,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Authenticate,
        Op::Setcred,
        Op::AcctMgmt,
        Op::OpenSession,
        Op::CloseSession,
        Op::Chauthtok,
    ];

    /// The pamtester operation.
    pub fn word(self) -> &'static str {
        match self {
            Op::Authenticate => "authenticate",
            Op::Setcred => "setcred",
            Op::AcctMgmt => "acct_mgmt",
            Op::OpenSession => "open_session",
            Op::CloseSession => "close_session",
            Op::Chauthtok => "chauthtok",
        }
    }

    /// The code the test stack lets through for this operation.
    pub fn ok(self) -> Ret {
        match self {
            Op::OpenSession | Op::CloseSession => Ret::Success,
            _ => Ret::Ignore,
        }
    }

    /// pamtester's `op(FLAGS)` choices (the module ignores flags).
    pub fn flag_choices(self) -> &'static [&'static str] {
        match self {
            Op::Authenticate => &[
                "PAM_SILENT",
                "PAM_DISALLOW_NULL_AUTHTOK",
                "PAM_SILENT|PAM_DISALLOW_NULL_AUTHTOK",
            ],
            Op::Setcred => &[
                "PAM_ESTABLISH_CRED",
                "PAM_REFRESH_CRED",
                "PAM_REINITIALIZE_CRED|PAM_SILENT",
            ],
            Op::Chauthtok => &["PAM_CHANGE_EXPIRED_AUTHTOK", "PAM_SILENT"],
            _ => &["PAM_SILENT"],
        }
    }

    /// The return code seen by pamtester for a failed operation.
    pub fn ret_of_message(self, msg: &str) -> Option<Ret> {
        match msg {
            "Authentication failure" => Some(Ret::AuthErr),
            "Permission denied" => Some(Ret::PermDenied),
            "Error in service module" => Some(Ret::ServiceErr),
            "System error" => Some(match self.ok() {
                Ret::Success => Ret::Ignore,
                _ => Ret::Success,
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Module arguments
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Kind {
    Flag(&'static str),
    AllowUser(Vec<String>),
    AllowGroup(Vec<String>),
    /// Invalid, and why (for the report).
    Bad(&'static str),
}

/// One module argument: the bytes the module receives, and what it is.
#[derive(Clone, Debug)]
pub struct Piece {
    pub raw: Vec<u8>,
    pub kind: Kind,
}

impl Piece {
    pub fn flag(name: &'static str) -> Piece {
        Piece {
            raw: name.as_bytes().to_vec(),
            kind: Kind::Flag(name),
        }
    }

    pub fn allow_user(names: Vec<String>) -> Piece {
        Piece {
            raw: format!("allow_user={}", names.join(",")).into_bytes(),
            kind: Kind::AllowUser(names),
        }
    }

    pub fn allow_group(names: Vec<String>) -> Piece {
        Piece {
            raw: format!("allow_group={}", names.join(",")).into_bytes(),
            kind: Kind::AllowGroup(names),
        }
    }

    pub fn bad(raw: impl Into<Vec<u8>>, why: &'static str) -> Piece {
        Piece {
            raw: raw.into(),
            kind: Kind::Bad(why),
        }
    }

    /// The argument as written in the service file: `[…]` when it is empty
    /// or holds a space or tab (libpam's syntax for such arguments).
    pub fn encoded(&self) -> Vec<u8> {
        let raw = &self.raw;
        assert!(
            !raw.iter().any(|b| matches!(b, b'#' | b'\n' | 0)),
            "generator bug: {} cannot be written in a service file",
            show(raw)
        );
        if raw.is_empty() || raw.iter().any(|b| matches!(b, b' ' | b'\t')) {
            assert!(!raw.contains(&b']'), "generator bug: {}", show(raw));
            let mut v = vec![b'['];
            v.extend_from_slice(raw);
            v.push(b']');
            v
        } else {
            assert!(raw[0] != b'[', "generator bug: {}", show(raw));
            raw.clone()
        }
    }
}

pub fn encode_args(pieces: &[Piece]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            v.push(b' ');
        }
        v.extend(p.encoded());
    }
    v
}

/// What the arguments mean, per the contract: unknown or malformed
/// arguments (or more than 64) make every callback fail closed.
#[derive(Debug, Default)]
pub struct ArgsModel {
    /// Some(position of the first bad argument, 1-based; 0 = the whole line)
    pub bad: Option<usize>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub audit_only: bool,
    pub require_publickey: bool,
    pub missing_ok: bool,
}

impl ArgsModel {
    pub fn of(pieces: &[Piece]) -> ArgsModel {
        let mut m = ArgsModel::default();
        if pieces.len() > MAX_ARGS {
            m.bad = Some(0);
            return m;
        }
        for (i, p) in pieces.iter().enumerate() {
            match &p.kind {
                Kind::Bad(_) => {
                    m.bad = Some(i + 1);
                    return m;
                }
                Kind::Flag("audit_only") => m.audit_only = true,
                Kind::Flag("require_publickey") => m.require_publickey = true,
                Kind::Flag("missing_ok") => m.missing_ok = true,
                Kind::Flag(_) => {}
                Kind::AllowUser(n) => m.users.extend(n.iter().cloned()),
                Kind::AllowGroup(n) => m.groups.extend(n.iter().cloned()),
            }
        }
        m
    }
}
