"""A hostile Python strategy for the sandbox tests. The attack is chosen by
the call's first tag, `attack:NAME[:ARG]`; every attack that is not
stopped by a limit reports what it got in log lines starting with `got:`
and proposes one valid hypothesis, so the test sees the call finish.
"""

import os
import sys

from reagent_sdk import (
    ByKnob,
    Float,
    Generator,
    Hypothesis,
    LlmError,
    MemoryQuotaError,
    export_generator,
    history,
    insights,
    llm,
    log,
    memory,
)


def attack_loop(arg):
    n = 0
    while True:
        n += 1


def attack_memory(arg):
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


def attack_output(arg):
    # One answer far past the output limit (4 MiB by default).
    title = "x" * 4096
    return [Hypothesis(title).set("lr", Float(0.1)) for _ in range(4096)]


def attack_print(arg):
    line = "y" * 1023 + "\n"
    for _ in range(16 * 1024):  # 16 MiB to stdout and stderr
        sys.stdout.write(line)
        sys.stderr.write(line)
    sys.stdout.flush()
    log.info("got: printed 16 MiB")


def attack_file(arg):
    for path in ["/etc/passwd", "/proc/self/environ", "app.py", "."]:
        try:
            with open(path, "rb") as f:
                log.error(f"got: read {len(f.read())} bytes of {path}")
        except BaseException as e:  # noqa: BLE001 - report whatever it was
            log.info(f"got: open {path}: {type(e).__name__}")
        try:
            log.error(f"got: listed {path}: {os.listdir(path)}")
        except BaseException as e:  # noqa: BLE001
            log.info(f"got: listdir {path}: {type(e).__name__}")
    try:
        with open("/tmp/reagent-python-escape", "w") as f:
            f.write("escaped")
        log.error("got: wrote /tmp/reagent-python-escape")
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: write: {type(e).__name__}")


def attack_env(arg):
    log.info(f"got: {len(os.environ)} environment variables: {sorted(os.environ)}")
    log.info(f"got: argv {sys.argv}")
    try:
        log.info(f"got: cwd {os.getcwd()}")
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: cwd: {type(e).__name__}")


def attack_socket(arg):
    port = int(arg)
    try:
        import socket
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: import socket: {type(e).__name__}: {e}")
        return
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        s.sendall(b"escaped")
        log.error(f"got: connected to 127.0.0.1:{port}")
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: connect: {type(e).__name__}: {e}")
    try:
        log.error(f"got: resolved localhost: {socket.getaddrinfo('localhost', port)}")
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: getaddrinfo: {type(e).__name__}: {e}")
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"escaped", ("127.0.0.1", port))
        log.error("got: sent a datagram")
    except BaseException as e:  # noqa: BLE001
        log.info(f"got: udp: {type(e).__name__}: {e}")


def attack_imports(arg):
    """Not an attack: every import through the SDK inside a component, each
    answer reported, so the test can compare them with what it passed."""
    log.debug("got: a debug line")
    log.warn("got: a warn line")
    trials = history.trials()
    log.info(f"got: {history.trial_count()} trials, first objective {trials[0].objective}")
    log.info(f"got: curve {history.curve(trials[0].id, 'valid_ne')}")
    found = insights.find(ByKnob("lr"))
    log.info(f"got: {len(found)} insight(s), effect {found[0].effect if found else None}")
    memory.set("k", b"v1")
    log.info(f"got: memory {memory.get('k')!r} keys {memory.keys()}")
    # Two values under the argument cap (1 MiB) that together pass the
    # store's quota (1 MiB).
    memory.set("a", b"x" * 600_000)
    try:
        memory.set("b", b"x" * 600_000)
        log.error("got: stored past the quota")
    except MemoryQuotaError:
        log.info("got: the quota held")
    memory.delete("a")
    memory.delete("k")
    log.info(f"got: after delete {memory.get('k')!r}")
    try:
        log.error(f"got: a completion {llm.complete([llm.message('user', 'hi')], 10)}")
    except LlmError as e:
        log.info(f"got: llm refused: {e}")


def attack_raise(arg):
    raise RuntimeError("a strategy bug")


def attack_recursion(arg):
    sys.setrecursionlimit(10**6)

    def deeper(n):
        return deeper(n + 1) + 1

    deeper(0)


ATTACKS = {name[len("attack_"):]: f for name, f in globals().items() if name.startswith("attack_")}


class Hostile(Generator):
    def propose(self, ctx, max):
        tag = ctx.tags[0] if ctx.tags else ""
        name, _, arg = tag.removeprefix("attack:").partition(":")
        if name not in ATTACKS:
            raise ValueError(f"unknown attack tag {tag!r}; known: {sorted(ATTACKS)}")
        out = ATTACKS[name](arg)
        if out is not None:
            return out
        return [Hypothesis(f"survived {name}").set("lr", Float(0.1))]


WitWorld = export_generator(Hostile())
