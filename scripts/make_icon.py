"""Draws data/icon.png, the app's browser-tab icon: a gate routing to three experts in the charts' colours.

The icon ships as a local file because Streamlit fetches ``:material/...`` page icons from Google's font servers,
which a classroom or air-gapped machine may not reach. Run: ``python scripts/make_icon.py``."""

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 64
EXPERT_COLORS = ["#4c78a8", "#f58518", "#54a24b"]  # kamoe_viz.charts.compare's linear / GRN / GRKAN colours


def draw() -> Image.Image:
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    gate = (14, 32)
    for i, color in enumerate(EXPERT_COLORS):
        expert = (50, 12 + 20 * i)
        pen.line([gate, expert], fill="#555555", width=4)
        pen.ellipse([expert[0] - 9, expert[1] - 9, expert[0] + 9, expert[1] + 9], fill=color)
    pen.ellipse([gate[0] - 11, gate[1] - 11, gate[0] + 11, gate[1] + 11], fill="#333333")
    return image


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "data" / "icon.png"
    draw().save(target, optimize=True)
    print(f"wrote {target}")
