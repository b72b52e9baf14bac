"""The one exception type of ``rawgan.data`` and the text that points users at CelebA."""

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"

#: Appended to every CelebA error so that the one-line message says where the data comes from.
CELEBA_HINT = (
    f"CelebA comes from {CELEBA_URL} (Align&Cropped images, file img_align_celeba.zip); "
    "pass the zip, the folder holding it, or the folder it unpacks to with --data-dir"
)


class DataError(Exception):
    """A dataset problem the user has to fix: missing or empty folder, not a zip, nothing decodable,
    a prepared folder that is missing or damaged, a dataset smaller than one batch.

    ``str(err)`` is a single line meant to be printed as ``error: <message>``; the command-line
    programs do exactly that and exit with status 2 instead of showing a traceback.
    """
