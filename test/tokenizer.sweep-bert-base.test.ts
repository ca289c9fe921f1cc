import { sweep } from './sweep';

sweep(['uncased', 'cased']);
