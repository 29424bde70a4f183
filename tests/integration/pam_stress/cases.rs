//! One random case: arguments, user, items, auth info and operations.

use super::*;

#[derive(Clone, Debug)]
pub struct Case {
    /// `seed:index` for random cases, a name for fixed ones.
    pub label: String,
    pub pieces: Vec<Piece>,
    /// pamtester's user argument (pam_start).
    pub user: Vec<u8>,
    /// `-I user=…`: replaces PAM_USER after pam_start.
    pub user_item: Option<Vec<u8>>,
    /// `-I rhost=…`, `-I tty=…`, `-I ruser=…`
    pub items: Vec<(&'static str, Vec<u8>)>,
    pub info_kind: &'static str,
    pub info: Option<Vec<u8>>,
    /// `-E` of a variable the module does not read.
    pub other_env: bool,
    pub ops: Vec<(Op, Option<&'static str>)>,
}

impl Case {
    pub fn effective_user(&self) -> &[u8] {
        self.user_item.as_deref().unwrap_or(&self.user)
    }
}

/// Random arguments; `user` (PAM_USER) is named in them, or one of its
/// groups, more often than chance would have it.
pub fn gen_pieces(world: &World, r: &mut Rng, budget: usize, user: &[u8]) -> Vec<Piece> {
    let user = std::str::from_utf8(user).unwrap_or("");
    let own_name: Vec<String> = world
        .user_names
        .iter()
        .filter(|n| *n == user)
        .cloned()
        .collect();
    let own_groups: Vec<String> = match world.membership.get(user) {
        Some(g) => world
            .group_names
            .iter()
            .filter(|n| g.contains(*n))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if r.percent(5) {
        // More arguments than the module accepts (all of them valid).
        let n = MAX_ARGS + 1 + r.below(6);
        return (0..n)
            .map(|_| Piece::flag(["debug", "audit_only"][r.below(2)]))
            .collect();
    }
    let mut v = Vec::new();
    for _ in 0..r.below(5) {
        let p = match r.below(100) {
            0..=19 => Piece::flag("audit_only"),
            20..=44 => Piece::flag("require_publickey"),
            45..=54 => Piece::flag("missing_ok"),
            55..=64 => Piece::flag("debug"),
            k => {
                let (pool, own) = if k < 83 {
                    (&world.user_names, &own_name)
                } else {
                    (&world.group_names, &own_groups)
                };
                let pool = if !own.is_empty() && r.percent(40) {
                    own
                } else {
                    pool
                };
                let mut names: Vec<String> =
                    (0..1 + r.below(3)).map(|_| r.pick(pool).clone()).collect();
                if r.percent(10) {
                    names.push(names[0].clone()); // a duplicate in the list
                }
                if k < 83 {
                    Piece::allow_user(names)
                } else {
                    Piece::allow_group(names)
                }
            }
        };
        v.push(p);
    }
    if r.percent(35) {
        for _ in 0..1 + r.below(2) {
            let at = r.below(v.len() + 1);
            v.insert(at, r.pick(&world.bad_pieces).clone());
        }
    }
    if !v.is_empty() && r.percent(10) {
        let again = r.pick(&v).clone();
        v.push(again); // a repeated argument
    }
    while encode_args(&v).len() > budget {
        v.pop();
    }
    v
}

pub fn gen_case(world: &World, seed: u64, index: usize, budget: usize) -> Case {
    let mut r = Rng::new(seed, index as u64);
    let user = if r.percent(55) {
        r.pick(&world.real_users).clone().into_bytes()
    } else {
        r.pick(&world.odd_users).clone()
    };
    let user_item = if r.percent(8) {
        Some(if r.percent(50) {
            r.pick(&world.real_users).clone().into_bytes()
        } else {
            r.pick(&world.odd_users).clone()
        })
    } else {
        None
    };
    let pieces = gen_pieces(world, &mut r, budget, user_item.as_deref().unwrap_or(&user));
    let mut items = Vec::new();
    for name in ["rhost", "tty", "ruser"] {
        if r.percent(60) {
            items.push((name, r.pick(&world.items).clone()));
        }
    }
    let info_kind = if r.percent(20) {
        "missing"
    } else {
        *r.pick(INFO_KINDS)
    };
    let info = auth_info(world, info_kind, &mut r);
    let weighted = [
        Op::Authenticate,
        Op::Authenticate,
        Op::Authenticate,
        Op::OpenSession,
        Op::OpenSession,
        Op::OpenSession,
        Op::Setcred,
        Op::AcctMgmt,
        Op::CloseSession,
        Op::Chauthtok,
    ];
    let ops = (0..1 + r.below(3))
        .map(|_| {
            let op = *r.pick(&weighted);
            let flags = if r.percent(12) {
                Some(*r.pick(op.flag_choices()))
            } else {
                None
            };
            (op, flags)
        })
        .collect();
    Case {
        label: format!("{seed:#x}:{index}"),
        pieces,
        user,
        user_item,
        items,
        info_kind,
        info,
        other_env: r.percent(10),
        ops,
    }
}
