"""coupad: bulk download of Coupa purchase-order attachments with a pool of warm browsers."""

__version__ = "0.1.0"
