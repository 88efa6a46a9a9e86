"""A credential plugin for the tests, run as `python exec_plugin.py STATE_DIR`.

It answers in the apiVersion it was asked in (KUBERNETES_EXEC_INFO), with the token in
STATE_DIR/token, or with the client certificate STATE_DIR/cert.pem + key.pem when those exist;
STATE_DIR/expires, if present, is the expirationTimestamp. It records each call's
KUBERNETES_EXEC_INFO in STATE_DIR/calls (one line each), and fails like a real plugin when
STATE_DIR/fail holds a message.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    state = Path(sys.argv[1])
    info = os.environ["KUBERNETES_EXEC_INFO"]
    with (state / "calls").open("a") as calls:
        calls.write(info + "\n")
    if (state / "fail").exists():
        print((state / "fail").read_text(), file=sys.stderr)
        sys.exit(1)
    status: dict[str, str] = {}
    if (state / "cert.pem").exists():
        status["clientCertificateData"] = (state / "cert.pem").read_text()
        status["clientKeyData"] = (state / "key.pem").read_text()
    else:
        status["token"] = (state / "token").read_text().strip()
    if (state / "expires").exists():
        status["expirationTimestamp"] = (state / "expires").read_text().strip()
    request = json.loads(info)
    print(
        json.dumps(
            {"apiVersion": request["apiVersion"], "kind": "ExecCredential", "status": status}
        )
    )


if __name__ == "__main__":
    main()
