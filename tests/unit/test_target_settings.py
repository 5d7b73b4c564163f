"""Adding a target setting is one declaration: the flag, the factory.yaml key,
the environment variable, the Target field and the check all follow from it.

The declaration is added in a separate interpreter, before the modules that
derive from the table are imported, as it would be in target_settings.py."""

from __future__ import annotations

import json
import subprocess
import sys

ADD_ONE_SETTING = """
import factory.target_settings as table
from factory.target_settings import Setting

table.SETTINGS += (Setting("motd", ("--motd",), "A line for the guest's /etc/motd.", default="hello",
                           yaml=("message-of-the-day",), env="FACTORY_MOTD",
                           check=lambda v: None if len(v) < 80 else "--motd is longer than 80 characters; shorten it"),)
table.BY_NAME = {s.name: s for s in table.SETTINGS}
"""

PROBE = """
import typer
from typer.testing import CliRunner

from factory.catalog import catalog
from factory.cli_target import target_options
from factory.config import load_targets
from factory.elements import search_path
from factory.errors import FactoryError
from factory.target import Flags, Target
from factory.validate import validate

app = typer.Typer()
seen = {}

@app.command()
@target_options
def probe(flags: Flags) -> None:
    seen["flag"] = flags.motd

CliRunner().invoke(app, ["--motd", "from the flag"], catch_exceptions=False)
path = sys.argv[1]
open(path, "w").write("defaults: {distro: debian, datastore: postgresql, message-of-the-day: from the file}\\n")
cat = catalog(search_path(""))
try:
    validate(Target("debian", "postgresql", motd="x" * 99), cat)
except FactoryError as e:
    seen["check"] = str(e)
seen.update(
    default=Target("debian", "postgresql").motd,
    file=load_targets(Flags(config=__import__("pathlib").Path(path)), environ={})[0].motd,
    env=load_targets(Flags(distro="debian", datastore="postgresql"), environ={"FACTORY_MOTD": "from env"})[0].motd,
    env_under_flag=load_targets(Flags(distro="debian", datastore="postgresql", motd="flag"),
                                environ={"FACTORY_MOTD": "from env"})[0].motd,
)
print(json.dumps(seen))
"""


def test_one_declaration_adds_a_setting_everywhere(tmp_path):
    script = "import json, sys\n" + ADD_ONE_SETTING + PROBE
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "factory.yaml")], capture_output=True, text=True,
                         check=True, env={"ELEMENTS_PATH": "", "PATH": "/usr/bin:/bin"}).stdout
    assert json.loads(out) == {
        "flag": "from the flag",
        "check": "--motd is longer than 80 characters; shorten it",
        "default": "hello",
        "file": "from the file",
        "env": "from env",
        "env_under_flag": "flag",
    }
