"""Class accounts: a teacher and N students with generated passwords, and the authenticator that
checks them. For a trial class on one machine; a real deployment uses the university's login
(OAuthenticator, LDAP) instead, see deploy/jupyterhub/README.md."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from jupyterhub.auth import Authenticator
from traitlets import Unicode

ITERATIONS = 200_000  # PBKDF2-SHA256: ~0.1 s a login here, slow enough against guessing a stolen file
NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # what JupyterHub accepts in a URL without escaping


def password_hash(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS).hex()


def make_class(class_dir: Path, students: list[str], teacher: str = "teacher") -> dict[str, str]:
    """Write ``accounts.json`` (salted hashes, read by the hub) and ``passwords.csv`` (the plain
    passwords, for the teacher to hand out; readable by the owner only). Returns name -> password."""
    names = [teacher, *students]
    bad = [n for n in names if not NAME.match(n)]
    if bad:
        raise ValueError(f"user names {bad}: allowed are lower-case letters, digits and '-', starting with a letter")
    if len(set(names)) != len(names):
        raise ValueError(f"user names must differ (the teacher is {teacher!r})")
    class_dir.mkdir(parents=True, exist_ok=True)
    passwords = {name: secrets.token_urlsafe(9) for name in names}
    users = {}
    for name, password in passwords.items():
        salt = secrets.token_bytes(16)
        users[name] = {"salt": salt.hex(), "hash": password_hash(password, salt)}
    write_private(class_dir / "accounts.json", json.dumps({"teacher": teacher, "users": users}, indent=1))
    write_private(class_dir / "passwords.csv", "user,password\n" + "".join(f"{n},{p}\n" for n, p in passwords.items()))
    return passwords


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_accounts(class_dir: Path) -> dict:
    path = class_dir / "accounts.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no class accounts; make them with: python -m bpviz_class.accounts {class_dir}"
        )
    return json.loads(path.read_text())


class ClassAuthenticator(Authenticator):
    """Checks a name and password against the class's ``accounts.json``."""

    class_dir = Unicode(help="the class folder holding accounts.json").tag(config=True)

    async def authenticate(self, handler, data: dict) -> str | None:
        users = read_accounts(Path(self.class_dir))["users"]  # read each time: a new class list needs no restart
        name, password = str(data.get("username", "")).strip().lower(), str(data.get("password", ""))
        user = users.get(name)
        if user is None:
            password_hash(password, b"-" * 16)  # the same time for an unknown name as for a wrong password
            return None
        ok = hmac.compare_digest(password_hash(password, bytes.fromhex(user["salt"])), user["hash"])
        return name if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description="Make a class: a teacher and N students with generated passwords.")
    ap.add_argument("class_dir", type=Path)
    ap.add_argument("--students", type=int, default=20, help="how many students (student-01, student-02, ...)")
    ap.add_argument("--names", nargs="*", help="the students' user names instead of student-NN")
    ap.add_argument("--teacher", default="teacher")
    args = ap.parse_args()
    students = args.names or [f"student-{i:02d}" for i in range(1, args.students + 1)]
    make_class(args.class_dir, students, args.teacher)
    print(f"{len(students)} students and {args.teacher!r}: passwords in {args.class_dir / 'passwords.csv'}")


if __name__ == "__main__":
    main()
