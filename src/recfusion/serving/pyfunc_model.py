"""The code MLflow runs to build the packaged recommender (MLflow's "models from code"): the
logged model holds this file and its artifacts, no pickled object, and loading runs it against
the installed recfusion package."""

from mlflow.models import set_model

from recfusion.serving.pyfunc import RecfusionModel

set_model(RecfusionModel())
