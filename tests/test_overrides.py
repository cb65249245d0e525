"""Override keys checked before Hydra runs, and values quoted so that Hydra reads them back."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from fewshot_cli.config.overrides import check_override_keys, quote_override
from fewshot_cli.errors import ConfigError


@pytest.mark.parametrize("path", [
    "/runs/my run/lr=0.1/last.pt", "/a,b/[x]/last.pt", "/it's/a \"quoted\" dir\\/last.pt",
    "C:\\runs\\trailing\\", "~/runs/${oc.env:HOME}/last.pt", "null", "1e3",
])
def test_quoted_value_parses_back_unchanged(path: str) -> None:
    override = OverridesParser.create().parse_override(quote_override("resume_from", path))
    # Hydra keeps `\${` for OmegaConf, which reads it as a literal `${`.
    assert override.value() == path.replace("${", "\\${")


def test_plain_path_stays_unquoted() -> None:
    assert quote_override("resume_from", "outputs/x/last.pt") == "resume_from=outputs/x/last.pt"


@pytest.mark.parametrize(("command", "args", "message"), [
    ("train", ["trainer.max_episodez=5"],
     "unknown key trainer.max_episodez; did you mean trainer.max_episodes?"),
    ("train", ["+trainer.max_episodez=5"], "did you mean trainer.max_episodes?"),
    ("train", ["-m", "++trainer.max_episodez=5,6"], "did you mean trainer.max_episodes?"),
    ("train", ["trainr.max_episodes=5"],
     "unknown key trainr.max_episodes; did you mean trainer.max_episodes?"),
    ("train", ["sed=3"], "unknown key sed; did you mean seed?"),
    ("train", ["dataset.dowload=false"], "unknown key dataset.dowload; did you mean dataset.download?"),
    ("train", ["scheduler.gama=0.5"], "did you mean scheduler.gamma?"),
    ("train", ["eval.protocol=full"], "unknown key eval.protocol; eval has n_episodes, split, within_group"),
    ("eval", ["eval.figurs=false"], "did you mean eval.figures?"),
    ("predict", ["topk=3"], "unknown key topk; did you mean top_k?"),
    # Groups the command's config does not list: Hydra's hint (`+debug=fast`) would compose unread.
    ("predict", ["debug=fast"],
     "debug= does not apply to `fewshot predict`; its config groups are device, hydra, method, paths"),
    ("eval", ["experiment=protonet_omniglot_5w1s"], "experiment= does not apply to `fewshot eval`"),
])
def test_unknown_keys_are_refused(command: str, args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("?", r"\?")):
        check_override_keys(command, args)


@pytest.mark.parametrize(("command", "args"), [
    ("train", ["--cfg", "job", "trainer.max_episodes=5", "seed=1,2", "method=maml", "device=cpu",
               "device.amp=bf16",
               "experiment=protonet_omniglot_5w1s", "hydra/launcher=local_parallel", "hydra.sweep.dir=x",
               "method.inner_steps=3", "method.backbone.hidden_channels=8", "~resume_from",
               "paths.data_dir=/a b"]),
    ("train", ["seed=1", "--cfg", "job", "sed=2"]),  # Hydra's argparse refuses this itself
    ("train", ["--version"]),
    ("train", ["+dataset.extra_option=1"]),  # group targets may take keys their YAML leaves out
    ("eval", ["+dataset.download=false", "ckpt_path=x.pt", "eval.protocol=full"]),
    ("predict", ["top_k=3", "pair=[a.png,b.png]", "device.type=cpu", "paths.cache_dir=x"]),
    ("train", ["trainer.max_episodes=(("]),  # a syntax error: Hydra reports it
])
def test_known_keys_pass(command: str, args: list[str]) -> None:
    check_override_keys(command, args)


@pytest.mark.parametrize(("args", "message"), [
    # A newcomer's input: an unknown preset of the optional experiment group trained the defaults, exit 0.
    (["experiment=totally_bogus_name"], r"experiment=totally_bogus_name is not an option of experiment"),
    (["experiment=protonet_mini_imagenet_5w1s"], r"did you mean experiment=relationnet_mini_imagenet_5w1s"),
    (["method=protonett"], r"did you mean method=protonet\?"),
    (["-m", "method=protonet,mamll"], r"method=mamll is not an option of method"),
])
def test_unknown_group_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_override_keys("train", args)


@pytest.mark.parametrize("args", [["experiment=protonet_omniglot_5w1s"], ["-m", "method=protonet,maml"],
                                  ["sweep=reproduce_omniglot"], ["experiment=null"],
                                  ["-m", "experiment=glob(protonet_*)"]])
def test_known_group_options_pass(args: list[str]) -> None:
    check_override_keys("train", args)


def test_eval_adds_the_plus_for_keys_of_the_checkpoints_nodes() -> None:
    # Was Hydra's "Key 'root' is not in struct" for `fewshot eval ... dataset.root=DIR`: eval's
    # dataset/method/backbone nodes are null until the checkpoint brings them.
    from fewshot_cli.config.overrides import add_to_checkpoint_nodes

    assert add_to_checkpoint_nodes("eval", ["ckpt_path=a.pt", "dataset.root=/tmp/imgs", "debug=fast"]) == [
        "ckpt_path=a.pt", "+dataset.root=/tmp/imgs", "debug=fast"]
    assert add_to_checkpoint_nodes("eval", ["method.inner_steps_eval=1", "-m", "seed=0,1"]) == [
        "+method.inner_steps_eval=1", "-m", "seed=0,1"]
    # Neighbours left alone: a group chosen on the line, a + already there, train's nodes (never null).
    chosen = ["dataset=mnist", "dataset.root=/d"]
    assert add_to_checkpoint_nodes("eval", chosen) == chosen
    assert add_to_checkpoint_nodes("eval", ["+dataset.root=/d"]) == ["+dataset.root=/d"]
    assert add_to_checkpoint_nodes("train", ["dataset.root=/d"]) == ["dataset.root=/d"]
