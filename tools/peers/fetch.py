"""Download a URL; prints '<size> <sha256 hex>'.

    fetch.py URL TIMEOUT"""
import hashlib
import sys
import urllib.request
data = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read()
print(len(data), hashlib.sha256(data).hexdigest())
