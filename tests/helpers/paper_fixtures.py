"""Tiny fixtures of CUB-200-2011, Cars-196 and SOP in PML 2.9.0's exact on-disk formats (shared by tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from PIL import Image

IMAGES_PER_CLASS = 2


def _image(path: Path, seed: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (9 + seed % 3, 7), color=(seed * 37) % 256 if mode == "L" else (seed, 2, 3)).save(path)


def make_cub(root: Path, classes: List[int]) -> None:
    """root/CUB_200_2011/{images.txt, image_class_labels.txt, images/<NNN.Name>/<file>.jpg}."""
    base = root / "CUB_200_2011"
    images, labels = [], []
    for c in classes:
        for k in range(IMAGES_PER_CLASS):
            idx = len(images) + 1
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
            _image(base / "images" / rel, idx, mode="L" if idx == 1 else "RGB")  # one grey image
            images.append(f"{idx} {rel}\n")
            labels.append(f"{idx} {c}\n")
    (base / "images.txt").write_text("".join(images))
    (base / "image_class_labels.txt").write_text("".join(labels))


def make_cars(root: Path, files: Dict[str, List[int]]) -> None:
    """Kaggle layout: names.csv, anno_{train,test}.csv, car_data/car_data/{train,test}/<name>/<file>."""
    names = [f"Make Model {i}" for i in range(1, 197)]
    names[98] = "Ram C/V Cargo Van Minivan 2012"  # class 99: PML maps "/" to "-" in folder names
    (root / "names.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "names.csv").write_text("\n".join(names) + "\n")
    count = 0
    for half, classes in files.items():
        rows = []
        for c in classes:
            for _ in range(IMAGES_PER_CLASS):
                count += 1
                name = f"{count:05d}.jpg"
                _image(root / "car_data" / "car_data" / half / names[c - 1].replace("/", "-") / name, count)
                rows.append(f"{name},1,2,8,6,{c}\n")
        (root / f"anno_{half}.csv").write_text("".join(rows))


def make_sop(root: Path, files: Dict[str, List[int]]) -> None:
    """root/Stanford_Online_Products/Ebay_{train,test}.txt with a header, images beside them."""
    base = root / "Stanford_Online_Products"
    count = 0
    for half, classes in files.items():
        rows = ["image_id class_id super_class_id path\n"]
        for c in classes:
            for k in range(IMAGES_PER_CLASS):
                count += 1
                rel = f"bicycle_final/{c}_{k}.JPG"
                _image(base / rel, count)
                rows.append(f"{count} {c} 1 {rel}\n")
        (base / f"Ebay_{half}.txt").write_text("".join(rows))
