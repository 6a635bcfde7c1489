"""`threadline monitor ...` and `threadline deploy ...` through the real CLI, on a prediction log
written by the serving layer's own logger (no server needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import Shell

SETUP = """
import json, sys
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadline.config import load_settings
from threadline.data import connect
from threadline.registry import ModelRegistry
from threadline.serving.feedback import record_feedback
from threadline.serving.inputs import Inputs
from threadline.serving.predlog import LogEntry, PredictionLog

repos = connect(load_settings())
rng = np.random.default_rng(3)
x = pd.DataFrame(rng.normal(size=(2000, 2)), columns=["a", "b"])
y = (x.a > 0).astype(int)
pd.DataFrame(x.assign(y=y)).to_parquet("train.parquet")
repos.create("train")
from pathlib import Path
repos.commit("train", [Path("train.parquet")], "training rows")
registry = ModelRegistry(repos)
model = LogisticRegression().fit(x, y)
registry.register("m", model, example=x.head(3), data=["train@main:train.parquet"])
registry.set_alias("m", "production", 1)
registry.set_alias("m", "fallback", 1)
json.dump({"ok": True}, sys.stdout)
"""

TRAFFIC = """
import json, sys, time
import numpy as np
from threadline.config import load_settings
from threadline.data import connect
from threadline.registry import ModelRegistry
from threadline.serving.feedback import record_feedback
from threadline.serving.inputs import Inputs
from threadline.serving.predlog import LogEntry, PredictionLog

repos = connect(load_settings())
model = ModelRegistry(repos).load_model("m@1")
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
shift = SHIFT
log = PredictionLog(repos, "live", background=False)
labels = []
now = time.time() * 1000
for i in range(300):
    a, b = float(rng.normal() + shift), float(rng.normal())
    answer = int(model.predict(np.array([[a, b]]))[0])
    rid = f"r{shift}-{i}"
    log.record(LogEntry(rid, now + i, "live", "primary", "m", 1, "primary", 0.5, 200,
                        Inputs.table({"a": [a], "b": [b]}), [answer]))
    labels.append({"request_id": rid, "label": int(a > 0)})
log.flush()
log.close()
record_feedback(repos, "live", labels)
json.dump({"rows": 300}, sys.stdout)
"""

POLICY = """\
key_columns: [a]
on_drift: [fallback]
alerts:
  - {name: drift, metric: drift.share, op: above, threshold: 0.2}
"""


def test_monitor_commands_check_alert_act_and_report(shell: Shell) -> None:
    shell.run("init")
    shell.python_json(SETUP)
    shell.run("deploy", "create", "live", "--model", "m@production")
    (shell.cwd / "policy.yaml").write_text(POLICY)
    shell.run("monitor", "policy", "live", "-f", "policy.yaml")
    assert shell.json("monitor", "policy", "live", "--json")["on_drift"] == ["fallback"]
    shell.python_json(TRAFFIC.replace("SHIFT", "0.0"))
    calm = shell.json("monitor", "run", "live", "--once", "--json")
    assert calm["check"]["verdict"] == "ok"
    assert calm["check"]["versions"]["m/1"]["accuracy"]["labelled_rows"] == 300
    shell.python_json(TRAFFIC.replace("SHIFT", "2.0"))
    drifted = shell.json("monitor", "run", "live", "--once", "--json")
    assert drifted["check"]["verdict"] == "drift"
    assert [a["action"] for a in drifted["actions"]] == ["fallback"]
    (alert,) = shell.json("monitor", "alerts", "live", "--json")
    assert alert["status"] == "firing"
    shell.run("monitor", "ack", str(alert["id"]), "--by", "oncall")
    assert shell.json("monitor", "alerts", "live", "--json")[0]["acked_by"] == "oncall"
    status = shell.json("monitor", "status", "live", "--json")
    assert [c["verdict"] for c in status["checks"]] == ["drift", "ok"]
    assert shell.json("deploy", "status", "live", "--json")["routes"][0]["model"] == "m@fallback"
    history = shell.json("deploy", "history", "live", "--json")
    assert [h["action"] for h in history] == ["fallback", "create"]
    points = shell.json("monitor", "accuracy", "live", "--json")
    assert sum(p["rows"] for p in points) == 600
    shell.run("monitor", "report", "live", "-o", "report.html")
    assert "a: reference vs window" in (shell.cwd / "report.html").read_text()
    (action,) = shell.json("monitor", "actions", "live", "--json")
    shell.run("monitor", "undo", str(action["id"]))
    assert shell.json("deploy", "status", "live", "--json")["routes"][0]["model"] == "m@production"
    refused = shell.run("monitor", "undo", str(action["id"]), code=2)
    assert "undone already" in refused.stderr
    missing = shell.run("monitor", "policy", "live", "-f", "nope.yaml", code=2)
    assert "policy file nope.yaml does not exist" in missing.stderr
    (shell.cwd / "bad.yaml").write_text("on_drift: [reboot]\n")
    bad = shell.run("monitor", "policy", "live", "-f", "bad.yaml", code=2)
    assert "unknown action 'reboot'" in bad.stderr
