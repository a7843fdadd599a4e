"""The bench's text-student families (``--text-student``) and unlabelled texts in the transfer term
(``--unlabelled-texts``): parsing, packing, where the unlabelled rows go, tiny end-to-end runs."""

import csv
import json

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.models import AttentionPooledNgramEmbedder, ConvNgramEmbedder, HashedNgramEmbedder
from pml_relaxed_bench.cli import main
from pml_relaxed_bench.config import BenchConfig
from pml_relaxed_bench.data import ViewCollate
from pml_relaxed_bench.methods import METHODS, MethodContext
from pml_relaxed_bench.runner import train_model
from pml_relaxed_bench.text_data import banking77_data, text_student_options
from pml_relaxed_bench.unlabelled import (
    UNLABELLED,
    LabelledRowsOnly,
    MixUnlabelledCollate,
    check_label_free_transfer,
    read_unlabelled_texts,
)
from tests.helpers.banking77_fixture import make_banking77
from tests.helpers.benchmark_scripts import load_script

UNLABELLED_TEXTS = ["my card is lost", "", "where is the nearest atm", "refund my top up please", "pin blocked"]


def _config(tmp_path, *argv):
    root = make_banking77(tmp_path)
    base = ["--dataset", "banking77", "--data-root", str(root), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    return BenchConfig.from_args(base + list(argv))


def _unlabelled_file(tmp_path):
    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join(UNLABELLED_TEXTS) + "\n", encoding="utf-8")
    return path


def test_options_parse_and_round_trip():
    argv = ["--text-student", "conv", "--text-kernel-size", "5", "--unlabelled-texts", "u.txt"]
    config = BenchConfig.from_args(argv + ["--unlabelled-per-batch", "3"])
    assert (config.text_student, config.text_kernel_size) == ("conv", 5)
    assert (config.unlabelled_texts, config.unlabelled_per_batch) == ("u.txt", 3)
    assert BenchConfig.from_args(config.to_argv()) == config
    defaults = BenchConfig.from_args([])
    assert (defaults.text_student, defaults.text_kernel_size, defaults.unlabelled_texts) == ("hashed", None, None)
    with pytest.raises(SystemExit):
        BenchConfig.from_args(["--text-student", "lstm"])


def test_student_options_per_family():
    assert text_student_options(BenchConfig()) == {"hidden_dim": 64, "mlp_hidden_dims": [256], "init_std": 0.1}
    assert text_student_options(BenchConfig(text_student="attention")) == text_student_options(BenchConfig())
    assert text_student_options(BenchConfig(text_student="conv"))["kernel_size"] == 3
    assert text_student_options(BenchConfig(text_student="conv", text_kernel_size=5))["kernel_size"] == 5
    with pytest.raises(ValueError, match="--text-kernel-size must be odd"):
        text_student_options(BenchConfig(text_student="conv", text_kernel_size=4))
    with pytest.raises(ValueError, match="--text-kernel-size shapes the convolution of --text-student conv"):
        text_student_options(BenchConfig(text_kernel_size=3))


def test_text_options_need_banking77():
    for argv in (["--text-student", "conv"], ["--unlabelled-texts", "u.txt"], ["--text-kernel-size", "3"]):
        with pytest.raises(ValueError, match="--dataset banking77"):
            main(BenchConfig.from_args(["--dataset", "digits", *argv]), argv)


@pytest.mark.parametrize(
    "family, cls, arch",
    [
        ("hashed", HashedNgramEmbedder, "ngram"),
        ("attention", AttentionPooledNgramEmbedder, "attention-ngram"),
        ("conv", ConvNgramEmbedder, "conv-ngram"),
    ],
)
def test_each_family_packs_its_own_ids(tmp_path, family, cls, arch):
    data = banking77_data(_config(tmp_path, "--text-student", family))
    assert set(data.settings.values()) == {(arch, 16), (arch, 32), (arch, 64)}
    student = data.make_model(arch, 16).eval()
    assert type(student.model) is cls
    rows = data.train.inputs
    if family == "conv":
        assert (rows.shape[1] - 1) % student.model.hasher.features_per_token == 0
    with torch.no_grad():  # the packed rows give what the raw strings give
        assert torch.allclose(student(rows), student.model(list(data.texts[0])), atol=1e-5)
    with pytest.raises(ValueError, match="students are"):
        data.make_model("ngram" if family != "hashed" else "conv-ngram", 16)


def test_unlabelled_texts_are_read_and_checked(tmp_path):
    assert read_unlabelled_texts(str(_unlabelled_file(tmp_path))) == [t for t in UNLABELLED_TEXTS if t]
    with pytest.raises(FileNotFoundError, match="--unlabelled-texts"):
        read_unlabelled_texts(str(tmp_path / "missing.txt"))
    too_many = _config(tmp_path, "--unlabelled-texts", str(_unlabelled_file(tmp_path)), "--unlabelled-per-batch", "5")
    with pytest.raises(ValueError, match="--unlabelled-per-batch must be in \\[1, 4\\]"):
        banking77_data(too_many)
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="at least one text"):
        read_unlabelled_texts(str(tmp_path / "blank.txt"))


def test_mix_collate_appends_k_unlabelled_rows_and_cycles_through_all():
    pool = torch.arange(5).unsqueeze(1) + 100
    collate = MixUnlabelledCollate(ViewCollate(None, 2), pool, per_batch=2)
    seen = []
    for _ in range(5):  # 10 draws cover the 5 rows twice, each pass a permutation
        inputs, labels = collate([(torch.tensor([1]), 0), (torch.tensor([2]), 1)])
        assert labels.tolist() == [0, 0, 1, 1, UNLABELLED, UNLABELLED, UNLABELLED, UNLABELLED]
        assert inputs[:4].squeeze(1).tolist() == [1, 1, 2, 2]
        assert inputs[4].item() == inputs[5].item() and inputs[6].item() == inputs[7].item()  # views of one row
        seen += [inputs[4].item(), inputs[6].item()]
    assert sorted(seen[:5]) == sorted(seen[5:]) == list(range(100, 105))
    with pytest.raises(ValueError, match="--unlabelled-per-batch must be in \\[1, 5\\]"):
        MixUnlabelledCollate(ViewCollate(None, 1), pool, per_batch=6)


def test_labelled_rows_only_drops_the_unlabelled_rows():
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, embeddings, labels):
            calls.append((embeddings.clone(), labels.clone()))
            return embeddings.sum()

    wrapper = LabelledRowsOnly(Recorder())
    embeddings, labels = torch.arange(8.0).reshape(4, 2), torch.tensor([0, UNLABELLED, 1, UNLABELLED])
    wrapper(embeddings, labels)
    assert calls[0][1].tolist() == [0, 1] and torch.equal(calls[0][0], embeddings[[0, 2]])
    with pytest.raises(ValueError, match="indices_tuple"):
        wrapper(embeddings, labels, indices_tuple=(torch.tensor([0]),) * 3)
    proxies = LabelledRowsOnly(pml_losses.ProxyAnchorLoss(num_classes=2, embedding_size=2))
    assert len(list(proxies.parameters())) == 1  # its optimizer trains the proxies


def test_label_reading_transfer_losses_are_refused():
    ctx = MethodContext(student_dim=8, teacher_dim=16, num_classes=3)
    for name in ("relaxed_contrastive+labels", "darkrank"):
        losses, miners, _ = METHODS[name].build(ctx)
        with pytest.raises(ValueError, match="reads labels"):
            check_label_free_transfer(name, losses, miners)
    for name in ("relaxed_contrastive", "relaxed_contrastive+proxy_anchor", "fitnet", "miner_contrastive", "rkd"):
        losses, miners, _ = METHODS[name].build(ctx)
        check_label_free_transfer(name, losses, miners)


class _SpyTransfer(RelaxedContrastiveLoss):
    def __init__(self):
        super().__init__()
        self.batches = []

    def compute_transfer_loss(self, batch):
        self.batches.append((batch.labels.clone(), batch.teacher_emb.clone()))
        return super().compute_transfer_loss(batch)


class _SpyProxyAnchor(pml_losses.ProxyAnchorLoss):
    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        self.seen = getattr(self, "seen", []) + [labels.clone()]
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)


def test_unlabelled_rows_reach_the_transfer_loss_and_not_the_label_loss(tmp_path):
    config = _config(tmp_path, "--unlabelled-texts", str(_unlabelled_file(tmp_path)), "--unlabelled-per-batch", "3")
    data = banking77_data(config)
    num_labelled = len(data.train) + len(data.evaluation)
    assert data.teacher.embeddings.shape[0] == num_labelled + 4 and data.unlabelled.shape[0] == 4
    assert data.unlabelled[:, 0].tolist() == list(range(num_labelled, num_labelled + 4))
    transfer, label_loss = _SpyTransfer(), _SpyProxyAnchor(num_classes=data.num_train_classes, embedding_size=16)
    config.batch_size, config.m = 8, 2
    student = data.make_model("ngram", 16)
    losses = {"transfer_loss": transfer, "metric_loss": label_loss}
    weights = {"transfer_loss": 1.0, "metric_loss": 1.0}
    train_model(student, data, config, losses, {}, weights, epochs=1, lr=1e-3, teacher=data.teacher)
    unlabelled_table = data.teacher.embeddings[num_labelled:]
    for labels, teacher_emb in transfer.batches:
        assert (labels == UNLABELLED).sum() == 3 and (labels >= 0).sum() == 8
        for row in teacher_emb[labels == UNLABELLED]:  # the cached teacher's embeddings of unlabelled texts
            assert torch.isclose(unlabelled_table, row).all(dim=1).any()
    assert label_loss.seen and all(labels.shape == (8,) and (labels >= 0).all() for labels in label_loss.seen)


def test_quick_run_conv_student_with_unlabelled_texts(tmp_path):
    root = make_banking77(tmp_path)
    out = tmp_path / "out"
    argv = ["--dataset", "banking77", "--data-root", str(root), "--settings", "dim16", "--seeds", "1"]
    argv += ["--batch-size", "8", "--m", "2", "--epochs", "1", "--no-progress", "--output-dir", str(out)]
    argv += ["--methods", "relaxed_contrastive+proxy_anchor", "fitnet", "proxy_anchor"]
    argv += ["--text-student", "conv", "--text-kernel-size", "5"]
    argv += ["--unlabelled-texts", str(_unlabelled_file(tmp_path)), "--unlabelled-per-batch", "2"]
    main(BenchConfig.from_args(argv), argv)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    students = {r["method"]: r for r in runs if r["kind"] != "teacher"}
    assert {r["student_arch"] for r in students.values()} == {"conv-ngram"}
    assert all(r["hparams"]["student_options"]["kernel_size"] == 5 and r["throughput"] > 0 for r in students.values())
    per_batch = {m: r["hparams"]["unlabelled_per_batch"] for m, r in students.items()}
    assert per_batch == {"relaxed_contrastive+proxy_anchor": 2, "fitnet": 2, "proxy_anchor": 0}
    resume = [a if a != "conv" else "attention" for a in argv if a not in ("--text-kernel-size", "5")]
    with pytest.raises(ValueError, match="another --text-student"):
        main(BenchConfig.from_args(resume), resume)
    without = argv[: argv.index("--unlabelled-texts")]  # the same students without the unlabelled texts
    with pytest.raises(ValueError, match="trained with --unlabelled-texts"):
        main(BenchConfig.from_args(without), without)


def test_default_output_folder_names_the_family():
    from pml_relaxed_bench.cli import resolve

    defaults = {"epochs": 10, "teacher_epochs": 0}
    folder = lambda *argv: resolve(BenchConfig.from_args(["--dataset", "banking77", *argv]), defaults, []).output_dir  # noqa: E731
    assert folder() == "results/banking77" and folder("--text-student", "conv") == "results/banking77_conv"
    assert folder("--text-student", "attention", "--val-classes", "8") == "results/banking77_attention_val"


def test_unlabelled_study_split_never_uses_validation_or_test_texts(tmp_path):
    banking77_unlabelled = load_script("banking77_unlabelled")
    root = make_banking77(tmp_path, train_intents=39)
    sizes = banking77_unlabelled.split_texts(str(root), 0.5, 0, tmp_path / "study")
    from pml_relaxed.datasets import Banking77

    val = Banking77(str(root), split="val", num_val_classes=8, seed=0)
    train = Banking77(str(root), split="train", num_val_classes=8, seed=0)
    unlabelled = (tmp_path / "study" / "unlabelled.txt").read_text(encoding="utf-8").splitlines()
    with open(tmp_path / "study" / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        kept = [(row["text"], row["category"]) for row in csv.DictReader(f)]
    assert not set(unlabelled) & set(val.texts)
    assert sorted(t for t, c in kept if c in val.intents) == sorted(val.texts)  # validation intents whole
    labelled = [t for t, c in kept if c in train.intents]
    assert sorted(labelled + unlabelled) == sorted(train.texts) and not set(labelled) & set(unlabelled)
    assert sizes == {"labelled_train_texts": len(labelled), "unlabelled_texts": len(unlabelled)}
    assert (tmp_path / "study" / "banking77" / "test.csv").read_text() == "text,category\n"


def test_peers_script_takes_one_point_per_family():
    peers = load_script("banking77_peers")
    point = "conv=--text-kernel-size 5 --text-hidden-dim 128 --epochs 20 --lr 3e-3"
    args = peers.get_args_parser().parse_args(["--family", "hashed=--text-mlp", "--family", point])
    assert peers.family_points(args) == {
        "hashed": ["--text-student", "hashed", "--text-mlp"],
        "conv": ["--text-student", "conv", "--text-kernel-size", "5", "--text-hidden-dim", "128", "--epochs", "20"]
        + ["--lr", "3e-3"],
    }
    config = peers.bench_args(args, "relaxed_contrastive+proxy_anchor", peers.family_points(args)["conv"])
    assert (config.text_student, config.text_kernel_size, config.epochs, config.lr, config.delta) == (
        "conv",
        5,
        20,
        3e-3,
        3.0,
    )  # the family's point after the method's tuned options
    for bad in (["--family", "lstm=--epochs 3"], ["--family", "conv"], ["--family", "hashed=", "--family", "hashed="]):
        with pytest.raises(ValueError, match="--family must be NAME=OPTIONS"):
            peers.family_points(peers.get_args_parser().parse_args(bad))
    with pytest.raises(ValueError, match="the bench refuses"):
        peers.family_points(peers.get_args_parser().parse_args(["--family", "conv=--no-such-option 1"]))


def test_unlabelled_study_runs_its_three_conditions(tmp_path):
    study = load_script("banking77_unlabelled")
    root = make_banking77(tmp_path, train_intents=39)
    out = tmp_path / "study"
    argv = ["--data-root", str(root), "--settings", "dim16", "--seeds", "1", "--unlabelled-per-batch", "8"]
    argv += ["--output-dir", str(out)]
    result = study.main(study.get_args_parser().parse_args(argv), argv)
    assert [row["condition"] for row in result["rows"]] == list(study.CONDITIONS)
    mixed = [json.loads(line) for line in (out / "labelled_plus_unlabelled" / "runs.jsonl").read_text().splitlines()]
    assert [r["hparams"]["unlabelled_per_batch"] for r in mixed if r["kind"] != "teacher"] == [8]
    assert all(r["eval_split"] == "val" for r in mixed)
    assert "| labelled+unlabelled | relaxed_contrastive+proxy_anchor | 16 |" in (out / "unlabelled.md").read_text()


def test_peers_table_marks_the_pareto_front():
    peers = load_script("banking77_peers")

    def record(method, kind, dim, r1, mapr):
        metrics = {"recall_at_1": r1, "mean_average_precision_at_r": mapr}
        return {"dataset": "banking77", "setting": f"dim{dim}", "method": method, "kind": kind, "seed": 0}, metrics

    records = []
    for method, kind, dim, r1, mapr in [
        ("teacher:t", "teacher", 384, 0.93, 0.54),
        ("peer:pca", "peer", 32, 0.90, 0.49),
        ("student", "combined", 32, 0.86, 0.43),
        ("slow_student", "combined", 32, 0.85, 0.43),
    ]:
        head, metrics = record(method, kind, dim, r1, mapr)
        records.append(
            head
            | {"eval_split": "test", "student_arch": "ngram", "student_dim": dim, "teacher_arch": "t"}
            | {"teacher_dim": 384, "metrics": metrics, "train_seconds": 1.0, "throughput": None, "hparams": {}}
        )
    speeds = {"teacher:t (384-d)": 60.0, "peer:pca (32-d)": 59.0, "student (32-d)": 5e4, "slow_student (32-d)": 4e4}
    assert peers.speed_front(peers.aggregate(records), speeds) == ["teacher:t (384-d)", "student (32-d)"]
    table = peers.peers_table(records, speeds)
    assert table[0].endswith("| front |")
    marked = {line.split(" | ")[0].lstrip("| ") for line in table[2:] if line.endswith("| yes |")}
    assert marked == {"teacher:t", "student"}
