'use strict';

// The metadata tree the emulator serves besides the token: the paths applications and client
// libraries read (gcp-metadata and google-auth-library probe `instance` to detect the cloud, then
// read the project id and the service account's email), answered the way the GCE-compatible
// service does: leaves as text, directories as listings, `?recursive=true` as JSON with camelCase
// keys (user attributes keep theirs), `?alt=json|text` to choose. Yandex Cloud's own keys are there
// too: the folder and cloud under instance/vendor/ (and yandex/folder-id), and the identity
// document (instance/vendor/identity/document, unsigned: the emulator has no key to sign it with).

const PREFIX = '/computeMetadata/v1/';

const DEFAULT_FOLDER_ID = 'emulator-folder';
const DEFAULT_CLOUD_ID = 'emulator-cloud';
// Stands for the identity document until the tree is merged: the document names the instance id
// the tree ends up with.
const IDENTITY_DOCUMENT = '(the identity document)';

// Defaults shaped like a Yandex Cloud VM's answers; `--metadata file.json` overrides any of them.
// `ids`: { folderId, cloudId }, each optional.
function defaultTree(ids) {
  const folder = ids && ids.folderId !== undefined ? ids.folderId : DEFAULT_FOLDER_ID;
  const cloud = ids && ids.cloudId !== undefined ? ids.cloudId : DEFAULT_CLOUD_ID;
  const account = {
    aliases: ['default'],
    email: 'emulator@' + folder + '.iam.gserviceaccount.com',
    scopes: ['https://www.googleapis.com/auth/cloud-platform'],
  };
  return {
    instance: {
      attributes: {},
      hostname: 'emulator.ru-central1.internal',
      id: 'emulator-instance-id',
      name: 'emulator',
      zone: 'projects/' + folder + '/zones/ru-central1-a',
      'service-accounts': { default: account },
      vendor: {
        'folder-id': folder,
        'cloud-id': cloud,
        identity: { document: IDENTITY_DOCUMENT },
      },
    },
    project: {
      attributes: {},
      'numeric-project-id': 0,
      'project-id': folder,
    },
    yandex: { 'folder-id': folder },
  };
}

// The identity document, as Yandex Cloud shapes it (compute/operations/vm-metadata/
// get-identity-document), for the instance id the tree has.
function identityDocument(tree, createdAt) {
  return JSON.stringify({
    instanceId: String(tree.instance.id),
    productCodes: null,
    imageId: 'emulator-image',
    productIds: null,
    createdAt: createdAt,
    version: '2023-03-01',
  });
}

function fillIdentityDocument(tree) {
  const vendor = isDir(tree.instance) && isDir(tree.instance.vendor) ? tree.instance.vendor : null;
  if (vendor && isDir(vendor.identity) && vendor.identity.document === IDENTITY_DOCUMENT) {
    vendor.identity = Object.assign({}, vendor.identity, { document: identityDocument(tree, new Date().toISOString()) });
  }
  return tree;
}

function checkId(name, v) {
  if (v !== undefined && !(typeof v === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(v))) {
    throw optionError(name + ' must be an ID of letters, digits, - and _ (like b1g8d7mse1ds3k5sh2rp), got ' + JSON.stringify(v));
  }
}

function isDir(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// Deep merge of `over` into a copy of `base`; a value of null removes the key.
function merge(base, over) {
  const out = Object.assign({}, base);
  Object.keys(over).forEach(function (k) {
    if (over[k] === null) delete out[k];
    else if (isDir(over[k]) && isDir(base[k])) out[k] = merge(base[k], over[k]);
    else out[k] = over[k];
  });
  return out;
}

function optionError(message) {
  const err = new TypeError(message);
  err.code = 'ERR_INVALID_OPTION';
  return err;
}

// The tree for `overrides` (an object shaped like the URL paths: { instance: { id, attributes:
// {...} }, project: { 'project-id' } }) over the defaults for `ids` ({ folderId, cloudId }). The
// token is not part of it: it is served on its own path.
function buildTree(overrides, ids) {
  checkId('folderId', ids && ids.folderId);
  checkId('cloudId', ids && ids.cloudId);
  if (overrides === undefined || overrides === null) return fillIdentityDocument(defaultTree(ids));
  if (!isDir(overrides)) throw optionError('metadata must be a JSON object shaped like the paths, e.g. {"instance":{"id":"..."}}');
  const tree = fillIdentityDocument(merge(defaultTree(ids), overrides));
  check(tree, '');
  return tree;
}

function check(node, where) {
  Object.keys(node).forEach(function (k) {
    const v = node[k];
    if (k === '' || k.indexOf('/') !== -1) throw optionError('metadata key ' + JSON.stringify(where + k) + ' must be a plain name');
    if (isDir(v)) check(v, where + k + '/');
    else if (!['string', 'number', 'boolean'].includes(typeof v) && !Array.isArray(v)) {
      throw optionError('metadata value at ' + where + k + ' must be a string, number, boolean, array or object');
    }
  });
}

// Recursive JSON uses camelCase keys, as the real service does, except for names: the user's own
// keys inside `attributes`, and the accounts under `service-accounts` (whose fields are camelCase
// again). mode: 'fields' | 'names' | 'raw'.
function camelTree(node, mode) {
  const out = {};
  Object.keys(node).forEach(function (k) {
    const key = mode === 'fields' ? k.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); }) : k;
    out[key] = isDir(node[k]) ? camelTree(node[k], childMode(mode, k)) : node[k];
  });
  return out;
}

function childMode(mode, key) {
  if (mode === 'raw') return 'raw';
  if (mode === 'names') return 'fields';
  if (key === 'attributes') return 'raw';
  return key === 'service-accounts' ? 'names' : 'fields';
}

function leafText(v) {
  return Array.isArray(v) ? v.join('\n') + '\n' : String(v);
}

// Flattened `path value` lines, the text form of a recursive answer.
function flatText(node, prefix, lines) {
  Object.keys(node).sort().forEach(function (k) {
    if (isDir(node[k])) flatText(node[k], prefix + k + '/', lines);
    else lines.push(prefix + k + ' ' + (Array.isArray(node[k]) ? node[k].join(',') : String(node[k])));
  });
  return lines;
}

// Answers a GET of `pathname` (under PREFIX) with its query: { status, type, body } or null when the
// path is not in the tree. `instance` and `instance/` are the same directory (the real service
// redirects the first to the second; clients follow).
function answer(tree, pathname, query) {
  const rest = pathname.slice(PREFIX.length);
  const parts = rest.split('/').filter(function (p) { return p !== ''; });
  let node = tree;
  for (let i = 0; i < parts.length; i++) {
    if (!isDir(node) || !Object.prototype.hasOwnProperty.call(node, parts[i])) return null;
    node = node[parts[i]];
  }
  const alt = query.get('alt');
  const recursive = query.get('recursive') === 'true';
  if (alt !== null && alt !== 'json' && alt !== 'text') {
    return { status: 400, type: 'text/plain; charset=utf-8', body: 'alt must be json or text\n' };
  }
  if (!isDir(node)) {
    if (alt === 'json') return { status: 200, type: 'application/json', body: JSON.stringify(node) };
    return { status: 200, type: 'application/text', body: leafText(node) };
  }
  if (recursive) {
    if (alt === 'text') return { status: 200, type: 'application/text', body: flatText(node, '', []).join('\n') + '\n' };
    const mode = parts.reduce(childMode, 'fields');
    return { status: 200, type: 'application/json', body: JSON.stringify(camelTree(node, mode)) };
  }
  const names = Object.keys(node).sort().map(function (k) { return isDir(node[k]) ? k + '/' : k; });
  // The token path is served on its own; list it where it lives.
  if (parts.length === 3 && parts[0] === 'instance' && parts[1] === 'service-accounts') names.push('token');
  if (alt === 'json') return { status: 200, type: 'application/json', body: JSON.stringify(names) };
  return { status: 200, type: 'application/text', body: names.join('\n') + '\n' };
}

module.exports = { PREFIX: PREFIX, buildTree: buildTree, answer: answer };
