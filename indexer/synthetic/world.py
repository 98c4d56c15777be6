"""Procedural driving scenes with known ground truth, deterministic by (seed, index).

Image level: the sky's colour and the overall brightness stand for the time of day, streaks,
flakes (and white ground) or haze for the weather, the road's width and markings plus buildings,
trees and fields for the scene, a bright disc with a halo for sun glare. Object level: a boxy
two-wheeled shape (car), a stick figure with a head (pedestrian), a red octagon on a pole
(stop sign), each with its pixel box. Labels are the default taxonomy's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

WEATHERS = ("clear", "rain", "snow", "fog")
TIMES_OF_DAY = ("day", "night")
SCENES = ("highway", "urban", "rural")
OBJECT_LABELS = ("car", "pedestrian", "traffic_sign_stop")
# class names of the shipped synthetic detector (indexer/models/autotag-tiny-detector.json
# records them, a test checks it agrees); default_taxonomy.toml maps them back
DETECTOR_LABELS = {
    "car": "synthetic_car",
    "pedestrian": "synthetic_pedestrian",
    "traffic_sign_stop": "synthetic_stop_sign",
}
DEFAULT_SIZE = (192, 128)

BBox = tuple[float, float, float, float]
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SceneSpec:
    """The latent attributes of a scene (what the image-level tags describe)."""

    weather: str
    time_of_day: str
    scene: str
    glare: bool

    @property
    def tags(self) -> frozenset[str]:
        tags = {f"weather_{self.weather}", f"time_of_day_{self.time_of_day}", f"scene_{self.scene}"}
        if self.glare:
            tags.add("glare")
        return frozenset(tags)


@dataclass(frozen=True)
class GroundTruth:
    """The tags that apply to an image and its objects as ``(label, (x1, y1, x2, y2))``."""

    tags: frozenset[str]
    objects: tuple[tuple[str, BBox], ...] = field(default=())
    spec: SceneSpec | None = field(default=None, compare=False)


def generate(
    n: int, seed: int, *, size: tuple[int, int] = DEFAULT_SIZE, start: int = 0
) -> Iterator[tuple[Image.Image, GroundTruth]]:
    """``n`` scenes; scene ``i`` depends only on ``(seed, i)``, so prefixes are stable."""
    for index in range(start, start + n):
        yield render_scene(seed, index, size=size)


def render_scene(
    seed: int, index: int, *, size: tuple[int, int] = DEFAULT_SIZE
) -> tuple[Image.Image, GroundTruth]:
    """Scene number ``index`` of world ``seed``."""
    rng = random.Random(f"autotag-synthetic:{seed}:{index}")
    day = rng.random() < 0.5
    weather = rng.choice(WEATHERS)
    spec = SceneSpec(
        weather=weather,
        time_of_day="day" if day else "night",
        scene=rng.choice(SCENES),
        glare=day and weather != "fog" and rng.random() < 0.3,
    )
    return _Painter(rng, spec, size).paint()


class _Painter:
    def __init__(self, rng: random.Random, spec: SceneSpec, size: tuple[int, int]) -> None:
        self.rng = rng
        self.spec = spec
        self.width, self.height = size
        self.night = spec.time_of_day == "night"
        self.horizon = int(self.height * rng.uniform(0.36, 0.48))
        self.vanish_x = self.width * rng.uniform(0.4, 0.6)
        self.image = Image.new("RGB", size)
        self.draw = ImageDraw.Draw(self.image)

    def paint(self) -> tuple[Image.Image, GroundTruth]:
        self._sky()
        if self.spec.glare:
            self._sun()
        getattr(self, f"_{self.spec.scene}")()
        if self.spec.weather == "snow":
            self._snow_cover()
        if self.night:
            self._darken()
        objects = self._objects()
        weather = self.spec.weather
        if weather == "rain":
            self._rain()
        elif weather == "snow":
            self._snowfall()
        elif weather == "fog":
            self._fog()
        truth = GroundTruth(tags=self.spec.tags, objects=tuple(objects), spec=self.spec)
        return self.image, truth

    # -- background ---------------------------------------------------------------------------
    def _jitter(self, colour: RGB, amount: int = 12) -> RGB:
        r, g, b = (min(255, max(0, c + self.rng.randint(-amount, amount))) for c in colour)
        return (r, g, b)

    def _sky(self) -> None:
        top, bottom = (
            ((20, 22, 48), (38, 40, 70)) if self.night else ((105, 160, 225), (185, 210, 240))
        )
        top, bottom = self._jitter(top, 10), self._jitter(bottom, 10)
        for y in range(self.horizon + 1):
            t = y / max(1, self.horizon)
            colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            self.draw.line([(0, y), (self.width, y)], fill=colour)
        if self.night and self.spec.weather == "clear":
            for _ in range(self.rng.randint(8, 20)):
                x, y = self.rng.randrange(self.width), self.rng.randrange(max(1, self.horizon - 4))
                self.draw.point((x, y), fill=(200, 200, 210))

    def _sun(self) -> None:
        cx = self.rng.uniform(0.25, 0.75) * self.width
        cy = self.rng.uniform(0.12, 0.7) * self.horizon
        pixels = np.asarray(self.image, dtype=np.float32)
        ys, xs = np.mgrid[0 : self.height, 0 : self.width]
        dist2 = (xs - cx) ** 2 + (ys - cy) ** 2
        halo = np.exp(-dist2 / (2 * self.rng.uniform(14, 20) ** 2))[..., None]
        pixels = pixels + halo * np.array([150.0, 140.0, 90.0])
        self.image.paste(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
        r = self.rng.uniform(6, 9)
        self.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 252, 225))

    def _road(self, bottom_left: float, bottom_right: float, top_half_width: float) -> None:
        h, w, vx = self.horizon, self.width, self.vanish_x
        polygon = [
            (bottom_left * w, self.height),
            (bottom_right * w, self.height),
            (vx + top_half_width, h),
            (vx - top_half_width, h),
        ]
        self.draw.polygon(polygon, fill=self._jitter((88, 88, 94), 8))

    def _dashes(self, bottom_x: float, colour: RGB, dashed: bool = True) -> None:
        h, vx = self.horizon, self.vanish_x
        steps = 10
        for k in range(steps):
            if dashed and k % 2:
                continue
            t0, t1 = k / steps, (k + 1) / steps
            # t in [0, 1] from horizon to the bottom edge; perspective: spacing grows with t
            y0 = h + (self.height - h) * t0**1.6
            y1 = h + (self.height - h) * t1**1.6
            x0 = vx + (bottom_x - vx) * (y0 - h) / (self.height - h)
            x1 = vx + (bottom_x - vx) * (y1 - h) / (self.height - h)
            width = max(1, round(1 + 2 * t1))
            self.draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)

    def _ground(self, colour: RGB) -> None:
        self.draw.rectangle([0, self.horizon, self.width, self.height], fill=self._jitter(colour))

    def _highway(self) -> None:
        self._ground((96, 128, 72))
        w = self.width
        self._road(-0.35, 1.35, 0.16 * w)
        white = (235, 235, 235)
        self._dashes(-0.3 * w, white, dashed=False)
        self._dashes(1.3 * w, white, dashed=False)
        for frac in (0.1, 0.5, 0.9):
            self._dashes(w * (-0.3 + 1.6 * frac), white)
        # guard rail along the horizon
        self.draw.line([(0, self.horizon - 1), (w, self.horizon - 1)], fill=(170, 170, 175))

    def _urban(self) -> None:
        self._ground((150, 148, 142))  # pavement
        x = -self.rng.randint(0, 10)
        while x < self.width:
            bw = self.rng.randint(16, 36)
            bh = int(self.height * self.rng.uniform(0.18, 0.42))
            colour = self._jitter(
                self.rng.choice([(120, 110, 100), (150, 140, 125), (95, 95, 105)])
            )
            top = max(0, self.horizon - bh)
            self.draw.rectangle([x, top, x + bw, self.horizon], fill=colour)
            for wy in range(top + 3, self.horizon - 4, 6):
                for wx in range(x + 3, x + bw - 3, 6):
                    self.draw.rectangle([wx, wy, wx + 2, wy + 3], fill=(60, 70, 90))
            x += bw + self.rng.randint(0, 3)
        self._road(0.12, 0.88, 0.05 * self.width)
        self._dashes(0.5 * self.width, (220, 200, 60))

    def _rural(self) -> None:
        self._ground((88, 150, 60))
        for _ in range(self.rng.randint(3, 6)):  # fields
            y0 = self.rng.uniform(self.horizon, self.height - 8)
            x0 = self.rng.uniform(-20, self.width)
            colour = self._jitter(self.rng.choice([(150, 130, 70), (110, 160, 60), (130, 100, 60)]))
            self.draw.rectangle([x0, y0, x0 + self.rng.uniform(30, 80), y0 + 10], fill=colour)
        for _ in range(self.rng.randint(2, 3)):  # hills
            cx = self.rng.uniform(0, self.width)
            rx, ry = self.rng.uniform(30, 70), self.rng.uniform(6, 16)
            box = [cx - rx, self.horizon - ry, cx + rx, self.horizon + ry]
            self.draw.pieslice(box, 180, 360, fill=self._jitter((60, 110, 50)))
        for _ in range(self.rng.randint(4, 9)):  # trees
            tx = self.rng.uniform(0, self.width)
            th = self.rng.uniform(10, 22)
            base = self.horizon + self.rng.uniform(-1, 3)
            self.draw.rectangle([tx - 1, base - th * 0.4, tx + 1, base], fill=(90, 60, 30))
            r = th * 0.35
            crown = [tx - r, base - th, tx + r, base - th + 2 * r]
            self.draw.ellipse(crown, fill=self._jitter((40, 100, 40), 15))
        self._road(0.32, 0.68, 0.015 * self.width)

    def _snow_cover(self) -> None:
        pixels = np.asarray(self.image, dtype=np.float32)
        ground = pixels[self.horizon :]
        pixels[self.horizon :] = ground * 0.45 + np.array([240.0, 240.0, 245.0]) * 0.55
        self.image.paste(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))

    def _darken(self) -> None:
        pixels = np.asarray(self.image, dtype=np.float32)
        pixels[self.horizon :] *= np.array([0.30, 0.30, 0.38])
        pixels[: self.horizon] = pixels[: self.horizon] * 0.9
        self.image.paste(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
        if self.spec.scene == "urban":  # lit windows
            for _ in range(self.rng.randint(15, 40)):
                wx = self.rng.randrange(self.width)
                wy = self.rng.randrange(max(1, int(self.horizon * 0.55)), max(2, self.horizon - 3))
                self.draw.rectangle([wx, wy, wx + 2, wy + 3], fill=(230, 200, 90))

    # -- objects ------------------------------------------------------------------------------
    def _objects(self) -> list[tuple[str, BBox]]:
        count = self.rng.choices(range(6), weights=(2, 3, 3, 2, 2, 1))[0]
        boxes: list[tuple[str, BBox]] = []
        for _ in range(count):
            label = self.rng.choice(OBJECT_LABELS)
            for _attempt in range(20):
                box = self._place(label)
                if all(_iou(box, other) < 0.05 for _, other in boxes):
                    boxes.append((label, box))
                    break
        boxes.sort(key=lambda item: item[1][3])  # far (higher up) first
        shade = 0.6 if self.night else 1.0
        for label, box in boxes:
            getattr(self, f"_draw_{label}")(box, shade)
        return [(label, _clip(box, self.width, self.height)) for label, box in boxes]

    def _place(self, label: str) -> BBox:
        bottom = self.rng.uniform(self.horizon + 10, self.height - 1)
        depth = (bottom - self.horizon) / (self.height - self.horizon)
        scale = (0.45 + 0.8 * depth) * self.rng.uniform(0.85, 1.15)
        if label == "car":
            w = 36 * scale
            h = w * self.rng.uniform(0.5, 0.62)
        elif label == "pedestrian":
            h = 30 * scale
            w = h * self.rng.uniform(0.34, 0.42)
        else:
            w = h = max(7.0, 14 * scale)
            bottom -= h * 1.3  # the sign sits on a pole
        x = self.rng.uniform(1, self.width - w - 1)
        return (round(x), round(bottom - h), round(x + w), round(bottom))

    def _colour(self, shade: float) -> RGB:
        base = self.rng.choice(
            [
                (200, 30, 30),
                (30, 60, 190),
                (235, 235, 235),
                (30, 30, 30),
                (230, 190, 30),
                (150, 150, 160),
                (30, 140, 60),
                (240, 120, 20),
            ]
        )
        r, g, b = (int(c * shade) for c in self._jitter(base, 15))
        return (r, g, b)

    def _draw_car(self, box: BBox, shade: float) -> None:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        body = self._colour(shade)
        wheel_r = max(1.5, h * 0.18)
        body_top = y1 + h * 0.42
        self.draw.rectangle([x1, body_top, x2, y2 - wheel_r], fill=body)
        cabin = [
            (x1 + w * 0.18, body_top),
            (x1 + w * 0.3, y1),
            (x2 - w * 0.3, y1),
            (x2 - w * 0.12, body_top),
        ]
        self.draw.polygon(cabin, fill=body)
        glass = tuple(int(c * shade) for c in (150, 180, 200))
        self.draw.polygon(
            [
                (x1 + w * 0.26, body_top - 1),
                (x1 + w * 0.33, y1 + h * 0.1),
                (x2 - w * 0.33, y1 + h * 0.1),
                (x2 - w * 0.2, body_top - 1),
            ],
            fill=glass,
        )
        for cx in (x1 + w * 0.22, x2 - w * 0.22):
            self.draw.ellipse([cx - wheel_r, y2 - 2 * wheel_r, cx + wheel_r, y2], fill=(15, 15, 15))
        if self.night:
            lamp = max(1.0, h * 0.08)
            for lx in (x1 + lamp, x2 - lamp):
                ly = body_top + h * 0.12
                self.draw.ellipse(
                    [lx - lamp, ly - lamp, lx + lamp, ly + lamp], fill=(255, 240, 180)
                )

    def _draw_pedestrian(self, box: BBox, shade: float) -> None:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        cx = (x1 + x2) / 2
        skin = tuple(int(c * shade) for c in self._jitter((210, 170, 130), 25))
        head = h * 0.11
        self.draw.ellipse([cx - head, y1, cx + head, y1 + 2 * head], fill=skin)
        shirt = self._colour(shade)
        torso_top, torso_bottom = y1 + h * 0.23, y1 + h * 0.6
        self.draw.rectangle([cx - w * 0.3, torso_top, cx + w * 0.3, torso_bottom], fill=shirt)
        arm = max(1, round(w * 0.14))
        self.draw.line(
            [(x1 + 0.5, torso_top + 1), (x1 + 0.5, y1 + h * 0.55)], fill=shirt, width=arm
        )
        self.draw.line(
            [(x2 - 0.5, torso_top + 1), (x2 - 0.5, y1 + h * 0.55)], fill=shirt, width=arm
        )
        legs = tuple(int(c * shade) for c in self._jitter((40, 40, 70), 15))
        leg = max(1, round(w * 0.2))
        stride = w * self.rng.uniform(0.05, 0.3)
        self.draw.line(
            [(cx - w * 0.12, torso_bottom), (cx - w * 0.12 - stride, y2)], fill=legs, width=leg
        )
        self.draw.line(
            [(cx + w * 0.12, torso_bottom), (cx + w * 0.12 + stride, y2)], fill=legs, width=leg
        )

    def _draw_traffic_sign_stop(self, box: BBox, shade: float) -> None:
        x1, y1, x2, y2 = box
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
        pole = tuple(int(c * shade) for c in (120, 120, 125))
        self.draw.line([(cx, cy), (cx, y2 + (y2 - y1) * 1.3)], fill=pole, width=2)
        red = tuple(int(c * shade) for c in (205, 25, 30))
        white = tuple(int(c * shade) for c in (240, 240, 240))
        outer = _octagon(cx, cy, r)
        self.draw.polygon(outer, fill=white)
        self.draw.polygon(_octagon(cx, cy, r * 0.82), fill=red)
        if r >= 6:
            self.draw.line([(cx - r * 0.45, cy), (cx + r * 0.45, cy)], fill=white, width=1)

    # -- weather ------------------------------------------------------------------------------
    def _rain(self) -> None:
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        slant = self.rng.uniform(-0.35, 0.35)
        # at night the streaks are lit by headlights and street lamps
        colour = (165, 170, 190) if self.night else (205, 210, 225)
        for _ in range(self.rng.randint(150, 250)):
            x, y = self.rng.uniform(-10, self.width + 10), self.rng.uniform(-10, self.height)
            length = self.rng.uniform(7, 14)
            alpha = self.rng.randint(130, 200)
            draw.line(
                [(x, y), (x + slant * length, y + length)],
                fill=(*colour, alpha),
                width=self.rng.choice((1, 2, 2)),
            )
        pixels = np.asarray(self.image, dtype=np.float32) * 0.85
        base = Image.fromarray(pixels.astype(np.uint8)).convert("RGBA")
        self.image.paste(Image.alpha_composite(base, layer).convert("RGB"))

    def _snowfall(self) -> None:
        colour = (200, 200, 205) if self.night else (250, 250, 252)
        for _ in range(self.rng.randint(150, 280)):
            x, y = self.rng.uniform(0, self.width), self.rng.uniform(0, self.height)
            r = self.rng.uniform(0.8, 2.0)
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    def _fog(self) -> None:
        pixels = np.asarray(self.image, dtype=np.float32)
        haze = np.array([58.0, 60.0, 66.0] if self.night else [196.0, 198.0, 202.0])
        ys = np.arange(self.height, dtype=np.float32)[:, None, None]
        strength = self.rng.uniform(0.5, 0.62)
        # densest at the horizon, thinning towards the bottom (nearer the camera)
        alpha = strength * np.clip(1.15 - 0.6 * (ys - self.horizon) / self.height, 0.6, 1.0)
        blended = pixels * (1 - alpha) + haze * alpha
        self.image.paste(Image.fromarray(blended.clip(0, 255).astype(np.uint8)))


def _octagon(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [
        (
            cx + r * math.cos(math.pi / 8 + k * math.pi / 4),
            cy + r * math.sin(math.pi / 8 + k * math.pi / 4),
        )
        for k in range(8)
    ]


def _clip(box: BBox, width: int, height: int) -> BBox:
    x1, y1, x2, y2 = box
    return (float(max(0, x1)), float(max(0, y1)), float(min(width, x2)), float(min(height, y2)))


def _iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
