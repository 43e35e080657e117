"""Predict a land-cover map of the embedded Landsat 8 scene, the library way.

Run with ``.venv/bin/python examples/predict_embedded_scene.py``; writes ``out/example.*``.
"""

from importlib import resources
from pathlib import Path

import xlandcover

data = resources.files("xlandcover") / "data"
img = xlandcover.open_raster(data / "zion-landsat8-demo.tif", chunks=256)  # lazy
model = xlandcover.load_model(data / "demo-zion.xlc")
print(img.sizes, img.rio.crs, list(img.band.values))

labels = img.landcover.predict(model)  # lazy: nothing has run yet
print(labels)  # (y, x) uint8, CRS and transform of the image, class names in attrs

out = Path("out")
labels.landcover.to_zarr(out / "example.zarr", overwrite=True)  # computes, chunk by chunk
labels.landcover.to_cog(out / "example.tif", overwrite=True)

probs = img.landcover.predict(model, output="probabilities")  # (class, y, x) float32
print(probs.sel(x=probs.x[350], y=probs.y[300]).to_series().round(3))
