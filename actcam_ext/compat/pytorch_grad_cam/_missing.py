"""One rule for names the compat package does not provide: an ImportError that says so."""

__all__ = ["missing", "PROVIDED_METHODS", "NOT_PROVIDED"]

PROVIDED_METHODS = ("GradCAM", "HiResCAM", "GradCAMPlusPlus", "XGradCAM", "EigenCAM", "EigenGradCAM", "LayerCAM",
                    "GradCAMElementWise", "GuidedBackpropReLUModel")

# pytorch-grad-cam 1.5's public names that actcam_ext does not compute, and what to use instead.
NOT_PROVIDED = {
    "ScoreCAM": None, "AblationCAM": None, "AblationLayer": None, "AblationLayerVit": None,
    "AblationLayerFasterRCNN": None, "FullGrad": None, "KPCA_CAM": None, "ShapleyCAM": None, "FinerCAM": None,
    "FEM": None, "RandomCAM": None, "SegEigenCAM": None, "RefineCAM": None, "SESS": None,
    "DeepFeatureFactorization": None, "run_dff_on_image": None, "GradCAMPlusPlusAblation": None,
    "BaseCAM": "write a method as a subclass of actcam_ext.methods.LayerMethod",
    "ActivationsAndGradients": "the methods hook the target layers themselves, for one call",
    "show_factorization_on_image": None, "create_labels_legend": None,
    "get_2d_projection_kernel": None, "get_2d_projection_with_sign_correction": None,
}


def missing(module: str, name: str, provided) -> None:
    """Raise for ``module.name``: AttributeError for dunder lookups (Python's own protocols ask
    for them), else an ImportError naming what exists; called from a module ``__getattr__``."""
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    peer = module.replace("actcam_ext.compat.", "", 1)
    if name in NOT_PROVIDED:
        hint = NOT_PROVIDED[name] or (f"the methods provided are {', '.join(PROVIDED_METHODS)}" if name[0].isupper()
                                      else f"{module} provides {', '.join(provided)}")
        raise ImportError(f"actcam: {peer}.{name} is not provided by actcam_ext.compat, which mirrors pytorch-grad-cam "
                          f"for the methods actcam_ext computes; {hint}; or import it from {peer} itself")
    raise ImportError(f"actcam: {module} has no name {name!r}; change the import to one of: {', '.join(provided)}")
