"""Write Fashion-MNIST (the Debian package's IDX files) as image folders, the way users keep their images:
`OUT/train/<class>/<n>.png` and `OUT/test/<class>/<n>.png`, 28x28 grayscale PNGs (or upscaled to `--side`), one
folder per class.

    python experiments/image_folders.py data/fashion_mnist_png      # then: squeezer search experiments/byom_resnet.yaml
    python experiments/image_folders.py data/fashion_mnist_128 --side 128      # bench_streaming.py's data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from squeezer.search.data import FASHION_MNIST_DIR, read_idx

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def write(out: Path, source: Path = FASHION_MNIST_DIR, side: int = 28) -> None:
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        for name in CLASSES:
            (out / part / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            picture = Image.fromarray(image)
            if side != picture.width:
                picture = picture.resize((side, side), Image.BILINEAR)
            picture.save(out / part / CLASSES[label] / f"{i:05d}.png")
        print(f"{part}: {len(images)} images in {out / part}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--side", type=int, default=28, help="pixels per side (bilinear upscaling)")
    args = parser.parse_args()
    write(args.out, side=args.side)


if __name__ == "__main__":
    main()
