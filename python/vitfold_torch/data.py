"""Fashion-MNIST (or MNIST) IDX files, as vitfold reads them (src/data/idx.ts), and vitfold's
default augmentation for them: a random crop from the image zero-padded by 2 and a horizontal
flip with probability 0.5 (src/data/batch.ts)."""

from __future__ import annotations

import gzip
import math
import os
import struct
from typing import Tuple

import torch

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# The per-channel statistics vitfold stores as the normalization of its Fashion-MNIST models.
FASHION_MNIST_NORMALIZATION = {"mean": [0.286], "std": [0.353], "crop_pct": 1}


def _read_idx(path: str) -> torch.Tensor:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype, rank = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    return torch.frombuffer(bytearray(raw[4 + 4 * rank:]), dtype=torch.uint8).reshape(dims)


def load_mnist_like(root: str | None, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images [N, S, S] uint8, labels [N] int64) of split 'train' or 't10k'."""
    root = root or DEBIAN_FASHION_MNIST

    def find(base: str) -> str:
        for name in (base, base + ".gz"):
            if os.path.exists(os.path.join(root, name)):
                return os.path.join(root, name)
        raise FileNotFoundError(f"{base}[.gz] not found in {root} (apt-get install dataset-fashion-mnist, or --data DIR)")

    images = _read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = _read_idx(find(f"{split}-labels-idx1-ubyte")).long()
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: {labels.shape[0]} labels for {images.shape[0]} {split} images")
    return images, labels


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 [B, S, S] -> float [B, 1, S, S], (v / 255 - mean) / std."""
    return ((images.float() / 255 - mean) / std).unsqueeze(1)


def augment(x: torch.Tensor, generator: torch.Generator, padding: int = 2, flip: bool = True, mean: float = 0.0, std: float = 1.0, part: slice = slice(None)) -> torch.Tensor:
    """Random crop of the zero-padded image (a shift in [-padding, padding]) and a random flip,
    per image, drawn from `generator` for the whole batch (so every process of a data-parallel
    run draws the same), applied to the images of `part`."""
    B, C, S, _ = x.shape
    shifts = torch.randint(-padding, padding + 1, (B, 2), generator=generator) if padding else torch.zeros(B, 2, dtype=torch.long)
    flips = torch.rand(B, generator=generator) < 0.5 if flip else torch.zeros(B, dtype=torch.bool)
    zero = (0 - mean) / std  # a padded pixel is a black pixel, normalized
    out = torch.full_like(x, zero)
    for b in range(B)[part]:
        dy, dx = int(shifts[b, 0]), int(shifts[b, 1])
        src = x[b].flip(-1) if flips[b] else x[b]
        ys, yd = (dy, 0) if dy >= 0 else (0, -dy)
        xs, xd = (dx, 0) if dx >= 0 else (0, -dx)
        h, w = S - abs(dy), S - abs(dx)
        out[b, :, yd:yd + h, xd:xd + w] = src[:, ys:ys + h, xs:xs + w]
    return out[part]


IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_pct": 0.875}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class MnistData:
    """Fashion-MNIST from IDX files: vitfold's default augmentation for training."""

    def __init__(self, root: str | None, limit_train: int | None = None, limit_test: int | None = None, normalization: dict | None = None):
        self.images, self.labels = load_mnist_like(root, "train")
        self.test_images, self.test_labels = load_mnist_like(root, "t10k")
        if limit_train:
            self.images, self.labels = self.images[:limit_train], self.labels[:limit_train]
        if limit_test:
            self.test_images, self.test_labels = self.test_images[:limit_test], self.test_labels[:limit_test]
        self.classes = FASHION_MNIST_CLASSES
        # A model's own normalization (a teacher's, an --init checkpoint's) wins, as in vitfold.
        self.normalization = normalization or FASHION_MNIST_NORMALIZATION
        self.size, self.channels = self.images.shape[1], 1

    @property
    def n_train(self) -> int:
        return self.images.shape[0]

    def train_batch(self, idx: torch.Tensor, generator: torch.Generator, padding: int, flip: bool, part: slice = slice(None)) -> Tuple[torch.Tensor, torch.Tensor]:
        """The images of `part` of the batch `idx`, augmented with draws made for the whole batch."""
        m, s = self.normalization["mean"][0], self.normalization["std"][0]
        return augment(normalize(self.images[idx], m, s), generator, padding, flip, m, s, part), self.labels[idx][part]

    def test_batches(self, batch: int):
        m, s = self.normalization["mean"][0], self.normalization["std"][0]
        for j in range(0, self.test_images.shape[0], batch):
            yield normalize(self.test_images[j:j + batch], m, s), self.test_labels[j:j + batch]


def round_half_up(x: float) -> int:
    """JavaScript's Math.round (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5)


class FolderData:
    """An image folder as vitfold reads one (src/data/folder.ts): ROOT/train/<class>/*.jpg and
    ROOT/val/<class>/*.jpg, classes in sorted order. Each image: shorter side resized to
    R = img_size / crop_pct (bicubic), the centre R x R square kept. Training: a random resized
    crop of the square (area 0.08-1, aspect 3/4-4/3, bilinear to img_size) and a random flip;
    evaluation: the centre img_size crop. Decoded with Pillow, in the DataLoader's workers."""

    def __init__(self, root: str, img_size: int, channels: int, normalization: dict | None = None, limit_train: int | None = None, limit_test: int | None = None):
        self.root, self.size, self.channels = root, img_size, channels
        self.normalization = normalization or (IMAGENET_NORMALIZATION if channels == 3 and img_size >= 160 else {"mean": [0.5] * channels, "std": [0.5] * channels, "crop_pct": 1})
        self.R = round_half_up(img_size / self.normalization["crop_pct"])
        train_dir = os.path.join(root, "train")
        if not os.path.isdir(train_dir):
            raise FileNotFoundError(f"{train_dir} does not exist (expected ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg)")
        self.classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
        self.train = self._list("train")[:limit_train]
        self.val = self._list("val")[:limit_test]

    def _list(self, split: str):
        out = []
        for c, name in enumerate(self.classes):
            d = os.path.join(self.root, split, name)
            for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    out.append((os.path.join(d, f), c))
        return out

    @property
    def n_train(self) -> int:
        return len(self.train)

    def _load(self, path: str, box: Tuple[float, float, float, float] | None, flip: bool) -> torch.Tensor:
        from PIL import Image  # Pillow (Debian: python3-pil; pip: the package's "folder" extra)

        img = Image.open(path).convert("RGB" if self.channels == 3 else "L")
        R, S = self.R, self.size
        w, h = img.size
        img = img.resize((R, max(R, round_half_up(h * R / w))) if w <= h else (max(R, round_half_up(w * R / h)), R), Image.BICUBIC)
        left, top = (img.size[0] - R) // 2, (img.size[1] - R) // 2
        square = img.crop((left, top, left + R, top + R))
        x0, y0, cw, ch = box if box else ((R - S) / 2, (R - S) / 2, S, S)
        img = square.resize((S, S), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(S, S, self.channels).permute(2, 0, 1).float() / 255
        mean = torch.tensor(self.normalization["mean"]).view(-1, 1, 1)
        std = torch.tensor(self.normalization["std"]).view(-1, 1, 1)
        return (x - mean) / std

    def _random_box(self, g: torch.Generator) -> Tuple[float, float, float, float]:
        """torchvision's RandomResizedCrop box in the R x R square, as vitfold draws it."""
        R = self.R
        for _ in range(10):
            area = R * R * (0.08 + 0.92 * float(torch.rand(1, generator=g)))
            ratio = math.exp(math.log(3 / 4) + float(torch.rand(1, generator=g)) * (math.log(4 / 3) - math.log(3 / 4)))
            cw, ch = round_half_up(math.sqrt(area * ratio)), round_half_up(math.sqrt(area / ratio))
            if 0 < cw <= R and 0 < ch <= R:
                x0 = int(torch.randint(R - cw + 1, (1,), generator=g))
                y0 = int(torch.randint(R - ch + 1, (1,), generator=g))
                return float(x0), float(y0), float(cw), float(ch)
        return 0.0, 0.0, float(R), float(R)

    def train_batch(self, idx: torch.Tensor, generator: torch.Generator, padding: int, flip: bool, part: slice = slice(None)) -> Tuple[torch.Tensor, torch.Tensor]:
        """The images of `part` of the batch `idx` (decoded here), with draws made for the whole batch."""
        boxes = [self._random_box(generator) for _ in range(len(idx))]
        flips = torch.rand(len(idx), generator=generator) < 0.5
        mine = list(range(len(idx)))[part]
        xs = [self._load(self.train[int(idx[b])][0], boxes[b], flip and bool(flips[b])) for b in mine]
        return torch.stack(xs), torch.tensor([self.train[int(idx[b])][1] for b in mine])

    def test_batches(self, batch: int):
        for j in range(0, len(self.val), batch):
            part = self.val[j:j + batch]
            yield torch.stack([self._load(p, None, False) for p, _ in part]), torch.tensor([c for _, c in part])


class EpochBatches(torch.utils.data.Dataset):
    """This process's part of each global batch of one epoch, from step `first` on: item i is
    (x, y) of step first + i, augmented from a generator seeded by the global step, so a
    DataLoader's workers prepare batches ahead without changing what is drawn."""

    def __init__(self, data, order: torch.Tensor, batch: int, first: int, last: int, step0: int, seed: int, padding: int, flip: bool, part: slice):
        self.data, self.order, self.batch, self.first, self.last = data, order, batch, first, last
        self.step0, self.seed, self.padding, self.flip, self.part = step0, seed, padding, flip, part

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int):
        j = self.first + i
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step0 + j)
        return self.data.train_batch(self.order[j * self.batch:(j + 1) * self.batch], g, self.padding, self.flip, self.part)
