"""Reference for the engine's image-folder parity test: plain PyTorch and torchvision on a PNG folder.

Usage: imagefolder_parity.py DIR OUT
Writes a small PNG image folder into DIR (train/<class>/*.png, test/<class>/*.png; RGB and grey
images of varying sizes), trains a small CNN on it with torchvision.datasets.ImageFolder and the
evaluation transforms below (PILToTensor, Resize(28), CenterCrop(24), scale to [0, 1],
Normalize), saves it as TorchScript to OUT/model.pt and writes the test split's float top-1 as
"CORRECT TOTAL" to OUT/accuracy.txt. The engine must score the same model the same way.
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.3, 0.2]
CLASSES = ["apple", "bird", "cat", "dog"]


def write_folder(root):
    rng = np.random.default_rng(7)
    for split, count in (("train", 160), ("test", 80)):
        for i in range(count):
            label = i % len(CLASSES)
            h, w = (int(v) for v in rng.integers(22, 41, size=2))
            pixels = rng.integers(0, 120, size=(h, w, 3)).astype(np.int32)
            # A class-dependent bright band whose position jitters: learnable, not trivially.
            start = label * h // 4 + int(rng.integers(-3, 4))
            pixels[max(0, start):max(0, start) + h // 4, :, label % 3] += 110
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if i % 5 == 0:
                image = image.convert("L")  # grey files: repeated to three channels
            folder = os.path.join(root, split, CLASSES[label])
            os.makedirs(folder, exist_ok=True)
            image.save(os.path.join(folder, f"{i:04d}.png"))


def main(root, out):
    write_folder(root)
    transform = v2.Compose([
        v2.PILToTensor(),
        v2.Resize(28, antialias=True),
        v2.CenterCrop(24),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])
    train = datasets.ImageFolder(os.path.join(root, "train"), transform=transform)
    test = datasets.ImageFolder(os.path.join(root, "test"), transform=transform)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64, len(CLASSES)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    for _ in range(3):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=50):
            correct += int((model(x).argmax(1) == y).sum())
    os.makedirs(out, exist_ok=True)
    torch.jit.trace(model, torch.zeros(1, 3, 24, 24)).save(os.path.join(out, "model.pt"))
    with open(os.path.join(out, "accuracy.txt"), "w") as f:
        f.write(f"{correct} {len(test)}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
