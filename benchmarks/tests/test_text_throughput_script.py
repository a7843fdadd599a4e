from tests.helpers.benchmark_scripts import load_script


def test_text_throughput_script(tmp_path):
    module = load_script("text_throughput")
    args = module.get_args_parser().parse_args(
        [
            "--texts",
            "64",
            "--batch-size",
            "32",
            "--dims",
            "16",
            "--repeats",
            "1",
            "--model2vec-dims",
            "--output-dir",
            str(tmp_path),
        ]
    )
    rows = module.main(args)
    assert [r["model"] for r in rows] == ["all-MiniLM-L6-v2 (384-d)", "HashedNgramEmbedder (16-d)"]
    assert rows[0]["ratio"] == 1.0 and rows[1]["ratio"] > 1.0, "the hashed student must be faster than MiniLM"
    assert "| HashedNgramEmbedder (16-d) | 1 |" in (tmp_path / "text_throughput.md").read_text()
