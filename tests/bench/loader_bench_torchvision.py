"""torchvision's DataLoader on an image folder, prepared as qnet_loader_bench prepares it.

Usage: loader_bench_torchvision.py DIR --size S --workers N [--batch 128] [--epochs 2]
       [--crop rrc|pad4]
Training transforms: RandomResizedCrop(S, scale=(0.25, 1)) or RandomCrop(S, padding=4), then
RandomHorizontalFlip, to float, Normalize; ImageFolder's PIL loader. Prints images/s over the
epochs, worker start-up included (as qnet's figure includes its pipeline's start).
"""
import argparse
import time

import torch
from torchvision import datasets
from torchvision.transforms import v2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--crop", choices=["rrc", "pad4"], default="rrc")
    a = p.parse_args()
    crop = (v2.RandomResizedCrop(a.size, scale=(0.25, 1.0), antialias=True) if a.crop == "rrc"
            else v2.RandomCrop(a.size, padding=4))
    transform = v2.Compose([
        v2.PILToTensor(),
        v2.Resize(a.size, antialias=True) if a.crop == "pad4" else v2.Identity(),
        crop,
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
    ])
    data = datasets.ImageFolder(f"{a.dir}/train", transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=True,
                                         num_workers=a.workers, persistent_workers=a.workers > 0)
    start = time.perf_counter()
    images = 0
    for _ in range(a.epochs):
        for x, _ in loader:
            images += x.shape[0]
    seconds = time.perf_counter() - start
    print(f"torchvision epoch: {images / seconds:.0f} images/s ({a.crop} crop, flip on, "
          f"{a.workers} workers)")


if __name__ == "__main__":
    main()
