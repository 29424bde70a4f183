//! The fixture: the module, users, groups, keys and the pools of input values.

use super::*;

pub struct World {
    pub dir: TestDir,
    /// A root-owned copy of the module (a concurrent build cannot change it).
    pub module: PathBuf,
    /// Real accounts: root, a user with no extra group, a member of `group`.
    pub real_users: Vec<String>,
    pub plain: String,
    pub member: String,
    pub group: String,
    /// An existing group nobody is in.
    pub lonely: String,
    /// The groups (`id -Gn`) of every pool name NSS knows.
    pub membership: HashMap<String, HashSet<String>>,
    /// User names that are not real accounts: unknown, odd, invalid.
    pub odd_users: Vec<Vec<u8>>,
    /// Valid names for `allow_user=` / `allow_group=`.
    pub user_names: Vec<String>,
    pub group_names: Vec<String>,
    pub bad_pieces: Vec<Piece>,
    /// Values for rhost, tty and ruser.
    pub items: Vec<Vec<u8>>,
    /// `TYPE BASE64` of an ed25519, an ECDSA and an RSA key, and of a user
    /// certificate for the ed25519 key.
    pub ed: String,
    pub ec: String,
    pub rsa: String,
    pub cert: String,
    // Dropped last, users before their groups.
    pub _users: Vec<TestUser>,
    pub _groups: Vec<TestGroup>,
}

pub fn material(line: &str) -> String {
    let v: Vec<&str> = line.split_whitespace().take(2).collect();
    v.join(" ")
}

impl World {
    pub fn new(name: &str) -> World {
        let dir = TestDir::new(name);
        let module = dir.join("pam_keyward.so");
        must(
            Command::new("install")
                .args(["-m", "644", "-o", "root", "-g", "root"])
                .arg(built_pam_module())
                .arg(&module),
        );
        let group = TestGroup::new();
        let lonely = TestGroup::new();
        let plain = TestUser::new();
        let member = TestUser::builder().group(&group.name).create();

        let ed = SshKey::ed25519(dir.path(), "ed");
        let ec = SshKey::generate(dir.path(), "ec", KeyType::Ecdsa(256));
        let rsa = SshKey::generate(dir.path(), "rsa", KeyType::Rsa(2048));
        let ca = SshKey::ed25519(dir.path(), "ca");
        let cert = ca.sign_user_cert(&ed, "kw stress laptop", &[&plain.name]);
        let cert = material(&fs::read_to_string(cert).unwrap());

        let pid = std::process::id();
        let real_users = vec!["root".to_owned(), plain.name.clone(), member.name.clone()];
        // Valid in allow_user= (and usable as PAM_USER): the accounts, an
        // unknown name, and names that are odd but pass the argument rules.
        let mut user_names = real_users.clone();
        user_names.extend([
            format!("kwnosuch{pid}"),
            "ünïcödé".into(),
            "名前".into(),
            "HOST$".into(),
            "alice.smith@corp.example".into(),
            "%s%n%x".into(),
            "root\u{200b}".into(), // zero-width space: not whitespace, not root
            "Root".into(),
            "a[b".into(),
            "'q'\"dq\"<t>;|*".into(),
            "a\\b".into(),
            "x".repeat(256), // the longest name allowed
        ]);
        let mut odd_users: Vec<Vec<u8>> = user_names[3..]
            .iter()
            .map(|s| s.clone().into_bytes())
            .collect();
        odd_users.extend([
            b"a b".to_vec(),
            b"tab\tuser".to_vec(),
            b"new\nline".to_vec(),
            b"x".repeat(300),
            b"\xff\xfeuser".to_vec(),
            Vec::new(),
            b"'; DROP TABLE users; --".to_vec(),
            b"\x1b[2J\x07".to_vec(),
            b"a:b".to_vec(),
            b"../../etc/passwd".to_vec(),
            b"root ".to_vec(),
            b"root\r".to_vec(),
            "\u{a0}root".as_bytes().to_vec(),
        ]);
        let group_names: Vec<String> = vec![
            group.name.clone(),
            lonely.name.clone(),
            "root".into(),
            plain.name.clone(),  // the user private group: plain's primary group
            member.name.clone(), // member's primary group
            format!("kwgnosuch{pid}"),
            "ünïgrüp".into(),
            "%n%n%n".into(),
            "wheel$".into(),
            "g".repeat(256),
        ];

        let mut membership: HashMap<String, HashSet<String>> = HashMap::new();
        for name in &user_names {
            if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let out = run(
                Command::new("id").args(["-Gn", "--", name]),
                Duration::from_secs(30),
            );
            if out.success() {
                let groups: HashSet<String> =
                    out.stdout.split_whitespace().map(str::to_owned).collect();
                membership.insert(name.clone(), groups);
            }
        }
        for (u, g) in [
            ("root", "root"),
            (plain.name.as_str(), plain.name.as_str()),
            (member.name.as_str(), group.name.as_str()),
            (member.name.as_str(), member.name.as_str()),
        ] {
            assert!(
                membership.get(u).is_some_and(|s| s.contains(g)),
                "{u} must be in {g}: {membership:?}"
            );
        }
        for u in &user_names[3..] {
            assert!(!membership.contains_key(u), "{u:?} exists on this machine");
        }

        let bad_pieces = vec![
            Piece::bad("alow_user=root", "unknown"),
            Piece::bad("nullok", "unknown"),
            Piece::bad("use_first_pass", "unknown"),
            Piece::bad("Debug", "unknown"),
            Piece::bad("audit-only", "unknown"),
            Piece::bad("allow_users=root", "unknown"),
            Piece::bad("ALLOW_USER=root", "unknown"),
            Piece::bad("ünknown", "unknown"),
            Piece::bad("=", "unknown"),
            Piece::bad("=debug", "unknown"),
            Piece::bad("--debug", "unknown"),
            Piece::bad("%s%n%s%n", "unknown"),
            Piece::bad("u".repeat(600), "unknown (long)"),
            Piece::bad("debug=1", "flag with value"),
            Piece::bad("audit_only=yes", "flag with value"),
            Piece::bad("missing_ok=", "flag with value"),
            Piece::bad("require_publickey=true", "flag with value"),
            Piece::bad("allow_user", "needs a value"),
            Piece::bad("allow_group", "needs a value"),
            Piece::bad("allow_user=", "empty name"),
            Piece::bad("allow_group=", "empty name"),
            Piece::bad("allow_user=root,,x", "empty name"),
            Piece::bad("allow_user=root,", "empty name"),
            Piece::bad("allow_group=,root", "empty name"),
            Piece::bad("allow_user=,", "empty name"),
            Piece::bad("allow_user=a b", "space"),
            Piece::bad("allow_user=root,bad name", "space"),
            Piece::bad("allow_group=a\tb", "tab"),
            Piece::bad("allow_user=a\x0bb", "control"),
            Piece::bad("allow_user=a\rb", "control"),
            Piece::bad("allow_user=a\x1bb", "control"),
            Piece::bad("allow_user=a\x7fb", "control"),
            Piece::bad("allow_user=a:b", "':'"),
            Piece::bad("allow_group=a=b", "'='"),
            Piece::bad("allow_user=../x", "'/'"),
            Piece::bad("allow_user=a\u{a0}b", "NBSP"),
            Piece::bad("allow_user=a\u{2028}b", "line separator"),
            Piece::bad("allow_group=a\u{3000}b", "ideographic space"),
            Piece::bad("allow_group=a\u{85}b", "NEL"),
            Piece::bad(b"allow_user=r\xffot".to_vec(), "not UTF-8"),
            Piece::bad(b"debug\xc3".to_vec(), "not UTF-8"),
            Piece::bad(b"\xc0\xaf".to_vec(), "not UTF-8"),
            Piece::bad(b"allow_group=\xed\xa0\x80".to_vec(), "not UTF-8"),
            Piece::bad(format!("allow_user={}", "a".repeat(257)), "name too long"),
            Piece::bad("", "empty argument"),
        ];
        let items: Vec<Vec<u8>> = vec![
            b"192.0.2.7".to_vec(),
            b"2001:db8::7".to_vec(),
            b"host.example.org".to_vec(),
            Vec::new(),
            b"a\nb".to_vec(),
            b"%n%n%n%n%s".to_vec(),
            b"x".repeat(3000),
            b"\xff\xfe\xfd".to_vec(),
            b"\x1b[31mred\x1b[0m".to_vec(),
            b"decision=exempt user=root".to_vec(),
            b"\"q\" \\ back".to_vec(),
            b"pts/7".to_vec(),
            b"/dev/pts/0".to_vec(),
            "ünï".as_bytes().to_vec(),
            b"a=b=c".to_vec(),
        ];
        World {
            module,
            real_users,
            plain: plain.name.clone(),
            member: member.name.clone(),
            group: group.name.clone(),
            lonely: lonely.name.clone(),
            membership,
            odd_users,
            user_names,
            group_names,
            bad_pieces,
            items,
            ed: ed.public_material(),
            ec: ec.public_material(),
            rsa: rsa.public_material(),
            cert,
            _users: vec![plain, member],
            _groups: vec![group, lonely],
            dir,
        }
    }

    /// Whether `user` (PAM_USER as bytes) is exempt under `m`, per the
    /// contract: named in allow_user (exactly), or a member (primary or
    /// supplementary) of an allow_group group; a name that is empty or not
    /// UTF-8 never is.
    pub fn exempt(&self, m: &ArgsModel, user: &[u8]) -> bool {
        let Ok(user) = std::str::from_utf8(user) else {
            return false;
        };
        if user.is_empty() {
            return false;
        }
        if m.users.iter().any(|u| u == user) {
            return true;
        }
        match self.membership.get(user) {
            Some(groups) => m.groups.iter().any(|g| groups.contains(g)),
            None => false,
        }
    }
}
