"""The one exception hierarchy of xlandcover.

Every error subclasses both :class:`XLandcoverError` and the built-in exception a caller
would naturally catch (``ValueError``, ``FileExistsError``, ...), and its message says how to
fix the problem.
"""

from __future__ import annotations


class XLandcoverError(Exception):
    """Base class of every error raised by xlandcover."""


class MissingCRSError(XLandcoverError, ValueError):
    """The raster has no coordinate reference system."""


class BandMismatchError(XLandcoverError, ValueError):
    """The image's bands do not match what the model package expects."""


class InvalidWindowError(XLandcoverError, ValueError):
    """The sliding-window size or overlap cannot be used with this model."""


class ChunkTooSmallError(XLandcoverError, ValueError):
    """A chunk is smaller than the halo the sliding window (or the sieve) needs."""


class AllNodataError(XLandcoverError, ValueError):
    """Every pixel of the scene is nodata; there is nothing to classify."""


class ModelPackageError(XLandcoverError, ValueError):
    """A model package is corrupt, truncated, of an unknown format or inconsistent."""


class OutputExistsError(XLandcoverError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class UnknownDeviceError(XLandcoverError, ValueError):
    """The requested torch device does not exist or is not available."""


class PrecisionError(XLandcoverError, ValueError):
    """The inference precision is unknown or not supported on the chosen device."""


class RasterInputError(XLandcoverError, ValueError):
    """The input raster has the wrong shape, dimensions or values."""


class UnknownNameError(XLandcoverError, AttributeError):
    """xlandcover (or a module it moved) has no attribute of this name."""


class MissingDependencyError(XLandcoverError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class XLandcoverWarning(UserWarning):
    """Base class of warnings issued by xlandcover."""


class RechunkWarning(XLandcoverWarning):
    """Chunks were merged because some were smaller than the halo."""


class InputNotFoundError(XLandcoverError, FileNotFoundError):
    """An input file (raster or model package) does not exist."""


class LabelAlignmentError(XLandcoverError, ValueError):
    """The label raster is not on the image's pixel grid (CRS, transform or shape differ)."""


class UnknownClassError(XLandcoverError, ValueError):
    """Label values (or mask colours) that are not among the declared classes, or a list of
    classes that cannot be used (duplicates, ids that are not integers)."""


class ChipSizeError(XLandcoverError, ValueError):
    """The chip size or stride cannot be used with this raster."""


class NoChipsError(XLandcoverError, ValueError):
    """No chips are left (for example after the nodata filter)."""


class EmptySplitError(XLandcoverError, ValueError):
    """A train/val/test partition came out empty."""


class UnknownArchitectureError(XLandcoverError, ValueError):
    """An smp architecture, encoder, loss or schedule name that does not exist."""


class PresetError(XLandcoverError, ValueError):
    """A STAC preset is inconsistent (default bands it does not have, an unknown composite),
    or its name is taken."""


class UnknownPresetError(PresetError):
    """No STAC preset has this name."""


class StacQueryError(XLandcoverError, ValueError):
    """The STAC search arguments (bbox, datetime, cloud filter, ...) cannot be used."""


class NoItemsError(XLandcoverError, LookupError):
    """The STAC search matched no items."""


class MissingAssetError(XLandcoverError, ValueError):
    """A band the model or the caller needs is not among the STAC items' assets."""


class MixedCRSError(XLandcoverError, ValueError):
    """The STAC items are in several CRSs and no target CRS was given."""


class CatalogUnreachableError(XLandcoverError, ConnectionError):
    """The STAC API did not answer (refused, timed out, or not a STAC API)."""


class MinimumMappingUnitError(XLandcoverError, ValueError):
    """The minimum mapping unit (sieve size) or its connectivity cannot be used."""


class TrainingSettingsError(XLandcoverError, ValueError):
    """A training setting is unknown or has a value that cannot be used."""


class ScheduleCutWarning(XLandcoverWarning):
    """Training stopped (time budget) before its learning-rate schedule ended."""


class WeakModelWarning(XLandcoverWarning):
    """The trained network does not beat a per-pixel random forest on the validation pixels."""


class SplitWarning(XLandcoverWarning):
    """A spatial split lost many chips to the buffer, or left classes out of a partition."""


class VectorInputError(XLandcoverError, ValueError):
    """A vector label table cannot be used: a missing label column, labels that are not class
    ids or names, missing label values, or geometries that are not points, lines or polygons."""


class VectorReadError(XLandcoverError, OSError):
    """A vector file (GeoPackage, Shapefile, GeoJSON, GeoParquet) cannot be read."""


class SampleDesignError(XLandcoverError, ValueError):
    """An accuracy sample or its design cannot be used: strata, sizes or allocation are wrong."""


class NonProbabilitySampleWarning(XLandcoverWarning):
    """The accuracy sample is not a probability sample of the map (for example training or
    validation chips): its accuracy and area estimates are not design-unbiased."""


class OverwriteRefusedError(OutputExistsError):
    """The output path holds something xlandcover did not write, so it is not replaced."""


class OutputConflictError(XLandcoverError, ValueError):
    """Two outputs are the same path, or an output is one of the inputs."""


class OutputWriteError(XLandcoverError, OSError):
    """Writing an output failed (full disk, I/O or GDAL error); nothing was published."""


class OutputNotWritableError(XLandcoverError, PermissionError):
    """The output folder cannot be written to (permissions or a read-only file system)."""


class OutputLockedError(XLandcoverError, BlockingIOError):
    """Another job is writing the same output (its lock file names the process and host)."""


class InputChangedError(XLandcoverError, ValueError):
    """An input of an unfinished job changed since the job started, so it cannot resume."""


class InputFileError(XLandcoverError, ValueError):
    """An input file is truncated, corrupt, or not of the format it was given as."""


class ChunkSizeError(XLandcoverError, ValueError):
    """A chunk size is not a positive number of pixels."""


class SchedulerError(XLandcoverError, ValueError):
    """The ``--scheduler`` / ``scheduler=`` value is not a known kind or address."""


class SchedulerUnreachableError(XLandcoverError, ConnectionError):
    """No Dask scheduler answers at the given address."""


class ConfigError(XLandcoverError, ValueError):
    """A TOML run configuration is malformed, or has unknown or mistyped settings."""


class PredictSettingsError(XLandcoverError, ValueError):
    """A ``predict`` setting (output layers, dtype, tta, batch size, temperature, band
    matching) has a value that cannot be used."""


class CalibrationError(XLandcoverError, ValueError):
    """Scores and targets for calibration do not fit (shapes, no pixel left, bin counts)."""


class ReportError(XLandcoverError, ValueError):
    """A confusion matrix and its classes do not fit (shape, counts, names, colours)."""


class InputTypeError(XLandcoverError, TypeError):
    """An argument is of a type the function cannot use (e.g. not a DataFrame)."""


class ChunkFailedError(XLandcoverError, RuntimeError):
    """One chunk of a batch job failed; finished chunks are kept for ``--resume``."""


class AreaOfInterestError(XLandcoverError, ValueError):
    """The area of interest cannot be used: empty, invalid or not a polygon (or a file of
    them), or of a type ``predict(aoi=...)`` does not take."""


class AreaOutsideRasterError(AreaOfInterestError):
    """The area of interest does not overlap the raster (often: coordinates in another CRS
    than the file says, or the wrong file)."""


class GraphKeyError(XLandcoverError, KeyError):
    """A Dask task key that a graph layer of xlandcover does not hold (Dask looks keys up in
    every layer of a graph; the Mapping protocol answers with a KeyError)."""


class InputRangeWarning(XLandcoverWarning):
    """The image's values lie far outside the range the model was trained on."""


class XLandcoverDeprecationWarning(FutureWarning):
    """A name, argument or import path that still works but will be removed in a later
    release; the message says what to use instead. (Not an :class:`XLandcoverWarning`, so
    filters on those do not hide it.)"""
